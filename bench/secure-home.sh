# Shared by bench/instructions.sh and bench/payload.sh (sourced, not run): release binaries,
# a work directory cleaned up at exit, and Palisade homes with security on.
#
# release_binaries        builds Palisade and the gRPC load generator in release and sets
#                         PALISADE and LOADGEN. Two builds: built together, the two packages
#                         would unify their dependencies' features and rebuild Palisade
#                         differently from bench/run.sh's build.
# work_dir NAME           creates the work directory WORK under $TMPDIR; at exit it stops the
#                         server in $server_pid and removes WORK, unless $keep is 1 or the
#                         script failed.
# secure_home DIR LEVEL MODEL_DIR...
#                         a platform config with an RS256 issuer and strict audit at LEVEL,
#                         an ALLOW policy for the service account bench/loadgen, each model
#                         directory built into DIR/home, and that account's token in DIR/token.

release_binaries() {
  cargo build -q --locked --release -p palisade-cli
  cargo build -q --locked --release -p palisade-bench-loadgen
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  PALISADE=$target_dir/release/palisade
  LOADGEN=$target_dir/release/palisade-bench-loadgen
}

work_dir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/palisade-$1.XXXXXX")
  server_pid=""
  trap work_dir_cleanup EXIT
  trap 'exit 130' INT TERM
}

work_dir_cleanup() {
  local status=$?
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "${keep:-0}" = 1 ] || [ "$status" -ne 0 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
  exit "$status"
}

secure_home() {
  local dir=$1 level=$2 model
  shift 2
  mkdir -p "$dir/policies"
  printf 'issuer:\n  algorithm: RS256\n  tokenLifetime: 2h\naudit:\n  mode: strict\n  minimumLevel: %s\n' "$level" >"$dir/platform.yaml"
  cat >"$dir/policies/allow.yaml" <<'YAML'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-loadgen, namespace: bench}
spec:
  action: ALLOW
  rules:
    - from: [{source: {requestPrincipals: ["https://palisade.local/system:serviceaccount:bench:loadgen"]}}]
YAML
  for model in "$@"; do
    "$PALISADE" --home "$dir/home" build "$model" >/dev/null
  done
  "$PALISADE" --home "$dir/home" sa create loadgen --namespace bench --config "$dir/platform.yaml" >/dev/null
  "$PALISADE" --home "$dir/home" token issue --service-account bench/loadgen --ttl 2h --config "$dir/platform.yaml" >"$dir/token"
}
