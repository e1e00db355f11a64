#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a repeatable measure of
# Palisade's per-request CPU work that, unlike req/s on a shared 2-core machine, does not
# move when something else runs. It complements bench/run.sh; it is not a test.
#
# Usage: bench/instructions.sh [--seconds N] [--keep]
#   --seconds N   length of the short run; the long run is twice as long (default 8)
#   --keep        keep the work directory (homes, logs, callgrind.out files)
#   --rows LIST   only these rows, of: off-rest, off-grpc, jwt-rest, jwt-grpc, full-rest,
#                 full-grpc, forest-rest (default: all)
#
# For each configuration (security off; JWT RS256 + ALLOW policy with audit off; the same
# with strict audit) and protocol (REST through wrk, gRPC through bench/loadgen, 4
# connections), the server runs under callgrind twice, for N and 2N seconds of load.
# Instructions per request = (Ir(long) - Ir(short)) / (requests(long) - requests(short)),
# which cancels start-up and shutdown. Only user-space instructions of the server count
# (not the kernel's TCP or fsync work). valgrind does not emulate the SHA extensions, so
# SHA-256 runs in software here: about 3.4k instructions per 64-byte block instead of a
# few hundred cycles on hardware; the report gives the SHA-256 share separately.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

seconds=8 keep=0 rows=all
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a value}; shift ;;
    --keep) keep=1 ;;
    --rows) rows=${2:?--rows needs a value}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/instructions.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
die() { printf 'bench/instructions.sh: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# shellcheck source=bench/secure-home.sh
. bench/secure-home.sh
release_binaries
work_dir instructions

body=$work/v2.json
printf '%s' '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' >"$body"

# One Palisade home per audit level, with iris-rf, an RS256 issuer and an ALLOW policy for
# the load generator's service account.
setup() {
  local dir=$work/$1 level=$2
  mkdir -p "$dir/model"
  cp fixtures/models/iris_rf_nozipmap.onnx "$dir/model/model.onnx"
  printf 'name: iris-rf\nversion: "1.0.0"\nnamespace: bench\nowners: [owner@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\naudit:\n  level: %s\n' \
    "$level" >"$dir/model/palisade.yaml"
  # The same forest with IsolationForest outlier scores (issue 15: at most 5% more).
  mkdir -p "$dir/forest"
  cp "$dir/model/model.onnx" fixtures/monitoring/iforest.onnx "$dir/forest/"
  sed 's/^name: iris-rf$/name: iris-if/' "$dir/model/palisade.yaml" >"$dir/forest/palisade.yaml"
  printf 'monitoring:\n  outliers:\n    method: isolation_forest\n    model: iforest.onnx\n' >>"$dir/forest/palisade.yaml"
  secure_home "$dir" "$level" "$dir/model" "$dir/forest"
}
setup audit Metadata
setup noaudit None

# Runs the server of $1 (audit|noaudit) under callgrind with load $2 (rest|grpc) for $3
# seconds, extra serve flags after; prints "<Ir> <requests> <sha256 Ir>".
measure() {
  local config=$1 protocol=$2 secs=$3
  shift 3
  local dir=$work/$config tag
  tag=$model-$config-$protocol-$secs${1:+-insecure}
  rm -rf "$dir/home/audit"
  valgrind --tool=callgrind --callgrind-out-file="$work/$tag.out" \
    "$PALISADE" --home "$dir/home" serve --config "$dir/platform.yaml" --policy-dir "$dir/policies" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" >"$work/$tag.log" 2>&1 &
  server_pid=$!
  local addr="" deadline=$((SECONDS + 180))
  until addr=$(grep -m1 '^palisade: listening on ' "$work/$tag.log" | awk '{print $4}') && [ -n "$addr" ]; do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$work/$tag.log" >&2; die "$tag: the server exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "$tag: the server did not start"
    sleep 0.5
  done
  until curl -sf -o /dev/null --max-time 5 "$addr/v2/health/ready"; do sleep 0.5; done
  local token="" requests
  [ $# -eq 0 ] && token=$(cat "$dir/token")
  if [ "$protocol" = rest ]; then
    BENCH_TOKEN=$token BENCH_BODY_FILE=$body wrk -t1 -c4 -d"${secs}s" -s bench/wrk.lua "$addr/v2/models/$model/infer" \
      >"$work/$tag.load"
    requests=$(sed -n 's/^BENCH_RESULT //p' "$work/$tag.load" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert sum(r["errors"].values()) == 0, r; print(r["requests"])')
  else
    BENCH_TOKEN=$token "$LOADGEN" --addr "$addr" --model "$model" --connections 4 --duration "${secs}s" --warmup 0s \
      >"$work/$tag.load"
    requests=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["errors"] == 0, r; print(r["requests"])' "$work/$tag.load")
  fi
  kill -INT "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  local total sha
  total=$(sed -n 's/^==[0-9]*== Collected : //p' "$work/$tag.log")
  sha=$(callgrind_annotate --auto=no --threshold=100 "$work/$tag.out" 2>/dev/null | awk '/sha2::sha256::compress256/ {gsub(",", "", $1); s += $1} END {printf "%d\n", s}')
  echo "$total $requests $sha"
}

report=$work/report.md
{
  echo "| configuration | protocol | instructions per request | of which SHA-256 (software under valgrind) |"
  echo "|---|---|---:|---:|"
} >"$report"
model=iris-rf
row() {
  local id=$1 name=$2 config=$3 protocol=$4
  shift 4
  case ",$rows," in ,all, | *",$id,"*) ;; *) return 0 ;; esac
  local short long
  short=$(measure "$config" "$protocol" "$seconds" "$@")
  long=$(measure "$config" "$protocol" $((seconds * 2)) "$@")
  python3 - "$name" "$protocol" "$short" "$long" >>"$report" <<'EOF'
import sys
name, protocol, short, long = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
(ir_a, n_a, sha_a), (ir_b, n_b, sha_b) = map(lambda v: map(int, v), (short, long))
if n_b <= n_a:
    sys.exit(f"{name} {protocol}: the long run served no more requests than the short one")
print(f"| {name} | {protocol} | {(ir_b - ir_a) / (n_b - n_a):,.0f} | {(sha_b - sha_a) / (n_b - n_a):,.0f} |")
EOF
  echo "== $name, $protocol: done" >&2
}
row off-rest "security off" noaudit rest --dangerous-disable-security
row off-grpc "security off" noaudit grpc --dangerous-disable-security
row jwt-rest "JWT RS256 + ALLOW policy, audit off" noaudit rest
row jwt-grpc "JWT RS256 + ALLOW policy, audit off" noaudit grpc
row full-rest "full security (strict audit, Metadata)" audit rest
row full-grpc "full security (strict audit, Metadata)" audit grpc
model=iris-if row forest-rest "JWT RS256 + ALLOW policy, audit off, IsolationForest outlier scores" noaudit rest

echo
echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo '+changes'), $(valgrind --version), ${seconds} s and $((seconds * 2)) s of load at 4 connections:"
echo
cat "$report"
