#!/usr/bin/env bash
# The benchmark harness: Palisade (full security, audit off, security off), its peers and a
# bare hyper server, serving the same iris models, under the same load, on loopback. The peers:
# BentoML and MLServer with scikit-learn (as usually deployed), and Triton (PyTriton), KServe,
# BentoML and Ray Serve running the same ONNX file as Palisade in onnxruntime.
#
# Usage: bench/run.sh [OPTIONS]
#   --smoke              Palisade and the ceiling only, 1 s cells, debug build, no peers; the
#                        report goes to a temporary file, which is then checked (CI runs this)
#   --duration D         measured time per cell (default 10s)
#   --warmup D           unmeasured load before each cell (default 2s; 0s skips it)
#   --connections LIST   comma-separated connection counts (default 1,16,64)
#   --only LIST          comma-separated servers, of: ceiling, palisade, palisade-audit-off,
#                        palisade-insecure, bentoml, mlserver, pytriton, pytriton-batching,
#                        kserve, kserve-2w, bentoml-onnx, bentoml-onnx-2w, rayserve (default: all)
#   --repeat N           measure every cell N times; the report gives medians and the spread
#                        (default 1)
#   --load-gate L        start a cell only when the 1-minute load average is below L (default
#                        1.0; 0 turns the gate off; off in --smoke)
#   --load-wait D        the longest wait for the gate; then the cell runs and the report marks
#                        it as loaded (default 120s)
#   --output FILE        where the report goes (default BENCHMARKS.md, between its markers)
#   --load-threads N     wrk / gRPC load generator threads (default 2)
#   --keep               keep the work directory (logs, homes, results.jsonl)
#   -h, --help           this text
#
# It installs what it needs: wrk from Debian (apt-get) if missing, each peer into its own
# bench/.venv-NAME from PyPI (pinned in bench/requirements-NAME.txt), and builds Palisade, the gRPC load generator and the ceiling
# server with cargo. All traffic goes to 127.0.0.1; every load run is bounded in time.
# See bench/README.md for what each row means.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
invocation="bench/run.sh${*:+ $*}"

PEERS=bentoml,mlserver,pytriton,pytriton-batching,kserve,kserve-2w,bentoml-onnx,bentoml-onnx-2w,rayserve
ALL=ceiling,palisade,palisade-audit-off,palisade-insecure,$PEERS
smoke=0 duration="" warmup="" connections="" only="" output="" load_threads=2 keep=0
repeat=1 load_gate="" load_wait=120s
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --duration) duration=${2:?--duration needs a value}; shift ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift ;;
    --connections) connections=${2:?--connections needs a value}; shift ;;
    --only) only=${2:?--only needs a value}; shift ;;
    --output) output=${2:?--output needs a value}; shift ;;
    --load-threads) load_threads=${2:?--load-threads needs a value}; shift ;;
    --keep) keep=1 ;;
    --repeat) repeat=${2:?--repeat needs a value}; shift ;;
    --load-gate) load_gate=${2:?--load-gate needs a value}; shift ;;
    --load-wait) load_wait=${2:?--load-wait needs a value}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
if [ "$smoke" = 1 ]; then
  duration=${duration:-1s} warmup=${warmup:-0s} connections=${connections:-4}
  only=${only:-ceiling,palisade,palisade-insecure}
  load_gate=${load_gate:-0}
  profile=debug
else
  duration=${duration:-10s} warmup=${warmup:-2s} connections=${connections:-1,16,64}
  only=${only:-$ALL}
  load_gate=${load_gate:-1.0}
  profile=release
fi
for s in ${only//,/ }; do
  case ",$ALL," in *",$s,"*) ;; *) echo "bench/run.sh: unknown server '$s' in --only (known: $ALL)" >&2; exit 64 ;; esac
done
case "$repeat" in '' | *[!0-9]* | 0) echo "bench/run.sh: --repeat needs a whole number of at least 1" >&2; exit 64 ;; esac
case "$load_gate" in *[!0-9.]* | '' | .) echo "bench/run.sh: --load-gate needs a number, such as 1.0 (0: no gate)" >&2; exit 64 ;; esac
if [ "$smoke" = 1 ]; then
  for s in ${only//,/ }; do
    case ",$PEERS," in *",$s,"*) echo "bench/run.sh: --smoke runs no peers" >&2; exit 64 ;; esac
  done
fi
wanted() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
started=$SECONDS

say() { printf '== %s\n' "$*"; }
die() { printf 'bench/run.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "installing $* needs root"; fi
}

# ---------------------------------------------------------------- tools and binaries
if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk (Debian)"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk
fi
command -v curl >/dev/null || die "curl is needed"
PY=python3
HARNESS="$PY $ROOT/bench/harness.py"

# Only the peers: nothing to build.
need_build=0
for s in ceiling palisade palisade-audit-off palisade-insecure; do wanted "$s" && need_build=1; done
if [ "$need_build" = 1 ]; then
  say "building palisade, the gRPC load generator and the ceiling server ($profile)"
  cargo_flags=(--locked)
  [ "$profile" = release ] && cargo_flags+=(--release)
  # Two builds: together, cargo would unify features and build palisade with the load
  # generator's tonic client features, a binary users never run.
  cargo build -q "${cargo_flags[@]}" -p palisade-cli
  cargo build -q "${cargo_flags[@]}" -p palisade-bench-loadgen -p palisade-bench-ceiling
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | $PY -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PALISADE=$target_dir/$profile/palisade
LOADGEN=$target_dir/$profile/palisade-bench-loadgen
CEILING=$target_dir/$profile/palisade-bench-ceiling
build_done=$SECONDS

# ---------------------------------------------------------------- work directory, cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/palisade-bench.XXXXXX")
results=$work/results.jsonl
: >"$results"
server_pid=""

stop_server() {
  [ -n "$server_pid" ] || return 0
  local pids
  pids=$(tree_pids "$server_pid" 2>/dev/null || true)
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  # Whatever the server left behind (peers' worker processes) is ours to end, after a grace
  # period in which they can finish their own shutdown (tritonserver removes its /tmp files).
  local pid deadline=$((SECONDS + 10))
  for pid in $pids; do
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
# Whether process $1 exists and is not a zombie.
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
tree_pids() {
  $PY -c 'import sys; sys.path.insert(0, sys.argv[1]); import harness; print(" ".join(map(str, harness.tree(int(sys.argv[2])))))' \
    "$ROOT/bench" "$1"
}
cleanup() {
  local status=$?
  stop_server
  if [ "$keep" = 1 ] || [ "$status" -ne 0 ]; then
    echo "bench/run.sh: work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in the background as the current server ($server_pid), logging to $1.log;
# waits until a line of its output matches $2 (an extended regex) and keeps that line in
# $server_line. Not for $(...): the server must be a child of this shell.
start_server() {
  local name=$1 pattern=$2
  shift 2
  local log=$work/$name.log
  : >"$log"
  "$@" >"$log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 180))
  while ! grep -Eq "$pattern" "$log"; do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$log" >&2; die "$name exited during startup"; }
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$log" >&2; die "$name did not start within 180 s"; }
    sleep 0.05
  done
  server_line=$(grep -Em1 "$pattern" "$log")
}

# Waits until GET $1 answers 200.
wait_ready() {
  local deadline=$((SECONDS + 120))
  until curl -sf -o /dev/null --max-time 2 "$1"; do
    kill -0 "$server_pid" 2>/dev/null || die "the server exited before $1 was ready"
    [ "$SECONDS" -lt "$deadline" ] || die "$1 not ready within 120 s"
    sleep 0.2
  done
}

# Prints the HTTP status of POST $1 with body file $2 and optional bearer token $3.
post_status() {
  local auth=()
  [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
    "${auth[@]}" --data-binary "@$2" "$1"
}
expect_status() {
  local want=$1 what=$2 got
  shift 2
  got=$(post_status "$@")
  [ "$got" = "$want" ] || die "$what: expected HTTP $want, got $got ($1)"
}

# One measured cell per connection count, --repeat times over: rest|grpc, scenario, model,
# URL or gRPC address. Each cell waits for the load gate first.
cells() {
  local protocol=$1 scenario=$2 model=$3 target=$4 body=${5:-}
  local c r gate=(--load-gate "$load_gate" --load-wait "$load_wait")
  for r in $(seq "$repeat"); do
    for c in ${connections//,/ }; do
      if [ "$protocol" = rest ]; then
        $HARNESS cell --results "$results" --scenario "$scenario" --model "$model" --protocol rest \
          --connections "$c" --duration "$duration" --warmup "$warmup" --pid "$server_pid" \
          --url "$target" --body-file "$body" --wrk-threads "$load_threads" "${gate[@]}"
      else
        $HARNESS cell --results "$results" --scenario "$scenario" --model "$model" --protocol grpc \
          --connections "$c" --duration "$duration" --warmup "$warmup" --pid "$server_pid" \
          --grpc-addr "$target" --loadgen "$LOADGEN" --wrk-threads "$load_threads" "${gate[@]}"
      fi
    done
  done
}
# Checks that the server answers the iris rows as onnxruntime does on the iris RF ONNX file
# (and as Palisade did earlier in the run): scenario, URL, body format (v2|bentoml), and
# `probabilities` when the answer must carry them. On a different answer it records why and
# fails, and the caller does not time the server.
agree() {
  local scenario=$1 url=$2 format=$3 need=()
  [ "${4:-}" = probabilities ] && need=(--need-probabilities)
  $HARNESS agree --results "$results" --scenario "$scenario" --url "$url" --format "$format" "${need[@]}" \
    --expected "$ROOT/fixtures/models/iris_rf_nozipmap.expected.json" --iris "$ROOT/fixtures/models/iris.json"
}
skip() { $HARNESS skip --results "$results" --scenario "$1" --what "$2" --reason "$3"; }
# Records the server's RSS; after a second of quiet except in the smoke run.
memory() { [ "$smoke" = 1 ] || sleep 1; $HARNESS server --results "$results" --scenario "$1" --phase "$2" --pid "$server_pid"; }

# Request bodies: one iris row (setosa), the same for every server.
V2_BODY=$work/v2.json
BENTO_BODY=$work/bentoml.json
printf '%s' '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' >"$V2_BODY"
printf '%s' '{"input_data":[[5.1,3.5,1.4,0.2]]}' >"$BENTO_BODY"

wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
if [ "$need_build" = 1 ]; then
  $HARNESS meta --results "$results" \
    "version:palisade=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo '+changes') ($profile)" \
    "version:$(rustc -V | awk '{print $1 "=" $2}')"
fi
$HARNESS meta --results "$results" \
  "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
  "version:harness=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- bench 2>/dev/null || echo '+changes')" \
  "version:wrk=$wrk_version" \
  "setting:cells=${duration} measured after ${warmup} warm-up, connections ${connections}, ${repeat} run(s) of each, ${load_threads} load-generator threads on the same machine, loopback" \
  "setting:load gate=$([ "$load_gate" = 0 ] && echo off || echo "a cell starts when the 1-minute load average is below ${load_gate}, or after ${load_wait} of waiting (then marked loaded)")" \
  "setting:request=one iris row (FP32 [1,4]) per request; REST is HTTP/1.1 keep-alive (wrk), gRPC is HTTP/2 with one stream per connection (bench/loadgen)"

# ---------------------------------------------------------------- the ceiling
if wanted ceiling; then
  say "ceiling: bare hyper 200 OK"
  start_server ceiling '^ceiling: listening on ' "$CEILING" --listen 127.0.0.1:0
  addr=${server_line##* }
  memory ceiling idle
  cells rest ceiling ceiling "$addr/v2/models/ceiling/infer" "$V2_BODY"
  memory ceiling after
  stop_server
fi

# ---------------------------------------------------------------- Palisade
SA_PRINCIPAL="https://palisade.local/system:serviceaccount:bench:loadgen"
have_flag() { "$PALISADE" serve --help | grep -q -- "$1"; }

# The issuer's signing algorithm: RS256 when the built-in issuer offers it, else its default.
issuer_algorithm() {
  local probe=$work/issuer-probe
  mkdir -p "$probe"
  printf 'issuer:\n  algorithm: RS256\n' >"$probe/platform.yaml"
  if "$PALISADE" --home "$probe/home" token issue --subject probe --config "$probe/platform.yaml" >/dev/null 2>&1; then
    echo RS256
  else
    echo ES256
  fi
}

# Writes a model directory: $1 dir, $2 name, $3 fixture, $4 extra manifest YAML.
model_dir() {
  mkdir -p "$1"
  cp "$ROOT/fixtures/models/$3.onnx" "$1/model.onnx"
  {
    printf 'name: %s\nversion: "1.0.0"\nnamespace: bench\nowners: [owner@example.com]\n' "$2"
    printf 'model:\n  path: model.onnx\n  format: onnx\n'
    printf '%s' "$4"
  } >"$1/palisade.yaml"
}

# Runs one Palisade configuration: palisade | palisade-audit-off | palisade-insecure.
palisade_scenario() {
  local scenario=$1 dir=$work/$1 audit_level=Metadata serve_flags=()
  case "$scenario" in
    palisade-audit-off) audit_level=None ;;
    palisade-insecure)
      if ! have_flag --dangerous-disable-security; then
        skip "$scenario" "all rows" "this palisade has no \`serve --dangerous-disable-security\` yet"
        return 0
      fi
      serve_flags=(--dangerous-disable-security) ;;
  esac
  local home=$dir/home
  mkdir -p "$dir/models" "$dir/policies"
  local manifest_audit=""
  [ "$audit_level" = None ] && manifest_audit=$'audit:\n  level: None\n'
  model_dir "$dir/models/rf" iris-rf iris_rf_nozipmap "$manifest_audit"
  model_dir "$dir/models/lr" iris-lr iris_lr_nozipmap "$manifest_audit"
  model_dir "$dir/models/mlp" iris-mlp iris_mlp_nozipmap "$manifest_audit"
  model_dir "$dir/models/mlp-batched" iris-mlp-batched iris_mlp_nozipmap \
    "${manifest_audit}"$'batching:\n  max_batch_size: 32\n  max_latency_us: 500\n  queue_size: 1024\n'
  local models=(rf lr)
  [ "$scenario" = palisade-audit-off ] || [ "$smoke" = 1 ] || models+=(mlp mlp-batched)
  [ "$smoke" = 1 ] && models=(rf)
  local built=() m err
  for m in "${models[@]}"; do
    if err=$("$PALISADE" --home "$home" build "$dir/models/$m" 2>&1); then
      built+=("$m")
    elif [ "$m" = mlp-batched ]; then
      skip "$scenario" "iris-mlp-batched (adaptive batching)" \
        "\`palisade build\` refused the batching section: $(printf '%s' "$err" | grep -m1 -i error | cut -c1-200)"
    else
      printf '%s\n' "$err" >&2
      die "palisade build $m failed"
    fi
  done

  cat >"$dir/platform.yaml" <<EOF
issuer:
  algorithm: $ALGORITHM
  tokenLifetime: 2h
audit:
  mode: strict
  minimumLevel: $audit_level
EOF
  cat >"$dir/policies/allow-loadgen.yaml" <<EOF
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-loadgen
  namespace: bench
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            requestPrincipals: ["$SA_PRINCIPAL"]
EOF
  local p=("$PALISADE" --home "$home")
  "${p[@]}" sa create loadgen --namespace bench --config "$dir/platform.yaml" >/dev/null
  "${p[@]}" sa create intruder --namespace bench --config "$dir/platform.yaml" >/dev/null
  local token intruder
  token=$("${p[@]}" token issue --service-account bench/loadgen --ttl 2h --config "$dir/platform.yaml")
  intruder=$("${p[@]}" token issue --service-account bench/intruder --ttl 2h --config "$dir/platform.yaml")

  local addr
  start_server "$scenario" '^palisade: listening on ' "${p[@]}" serve --config "$dir/platform.yaml" \
    --policy-dir "$dir/policies" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${serve_flags[@]}"
  addr=$(printf '%s' "$server_line" | awk '{print $4}')
  wait_ready "$addr/v2/health/ready"

  # The security this row claims is really on (or really off).
  local infer=$addr/v2/models/iris-rf/infer
  if [ "$scenario" = palisade-insecure ]; then
    expect_status 200 "$scenario: no token" "$infer" "$V2_BODY"
  else
    expect_status 401 "$scenario: no token" "$infer" "$V2_BODY"
    expect_status 403 "$scenario: a service account without an ALLOW policy" "$infer" "$V2_BODY" "$intruder"
  fi
  expect_status 200 "$scenario: the load generator's token" "$infer" "$V2_BODY" "$token"

  export BENCH_TOKEN=$token
  [ "$scenario" = palisade-insecure ] && unset BENCH_TOKEN
  agree "$scenario" "$infer" v2 probabilities || die "$scenario: iris-rf answers differently from onnxruntime"
  memory "$scenario" idle
  for m in "${built[@]}"; do
    cells rest "$scenario" "iris-$m" "$addr/v2/models/iris-$m/infer" "$V2_BODY"
    if [ "$m" = rf ] && [ "$scenario" != palisade-audit-off ]; then
      local probe
      if probe=$("$LOADGEN" --probe --addr "$addr" --model iris-rf 2>&1); then
        cells grpc "$scenario" iris-rf "$addr"
      else
        skip "$scenario" "iris-rf over gRPC" "no gRPC on the REST port yet ($(printf '%s' "$probe" | tail -n1 | cut -c1-160))"
      fi
    fi
  done
  unset BENCH_TOKEN
  memory "$scenario" after

  local records=0 segment
  for segment in "$home"/audit/segment-*.jsonl; do
    [ -e "$segment" ] && records=$((records + $(wc -l <"$segment")))
  done
  $HARNESS meta --results "$results" "audit-records:$scenario=$records"
  if [ "$audit_level" = Metadata ] && [ "$scenario" = palisade ] && [ "$records" -eq 0 ]; then
    die "$scenario: strict audit is on but no audit record was written"
  fi
  stop_server
}

if wanted palisade || wanted palisade-audit-off || wanted palisade-insecure; then
  ALGORITHM=$(issuer_algorithm)
  $HARNESS meta --results "$results" \
    "label:palisade=Palisade, full security (JWT $ALGORITHM + ALLOW policy + strict audit)" \
    "label:palisade-audit-off=Palisade, JWT $ALGORITHM + ALLOW policy, audit off" \
    "label:palisade-insecure=Palisade, security off"
  for s in palisade palisade-audit-off palisade-insecure; do
    if wanted "$s"; then
      say "$s"
      palisade_scenario "$s"
    fi
  done
fi

# ---------------------------------------------------------------- peers
# Creates or updates bench/.venv-$1 from bench/requirements-$1.txt (pinned, PyPI).
peer_venv() {
  local venv=$ROOT/bench/.venv-$1 req=$ROOT/bench/requirements-$1.txt stamp
  stamp=$(sha256sum "$req" | awk '{print $1}')
  if [ ! -x "$venv/bin/python" ]; then
    say "creating bench/.venv-$1" >&2
    python3 -m venv "$venv" >&2
  fi
  if [ "$(cat "$venv/.bench-stamp" 2>/dev/null)" != "$stamp" ]; then
    say "installing $1 from PyPI (bench/requirements-$1.txt)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$stamp" >"$venv/.bench-stamp"
  fi
  echo "$venv"
}
peer_version() { "$1/bin/python" -c "import importlib.metadata as m; print(m.version('$2'))"; }

# Checks a started peer's answers, then measures it on iris RF: scenario, infer URL, body
# format (v2|bentoml), and `probabilities` when the answer must carry them (the onnxruntime
# peers). A peer that answers differently is recorded as not timed; $peer_timed says which.
time_peer() {
  local scenario=$1 url=$2 format=$3 need=${4:-} body=$V2_BODY
  [ "$format" = bentoml ] && body=$BENTO_BODY
  peer_timed=0
  if ! agree "$scenario" "$url" "$format" "$need"; then
    skip "$scenario" "all rows" "its answers differ from onnxruntime's on the same ONNX file (see the answers table), so it was not timed"
    return 0
  fi
  peer_timed=1
  memory "$scenario" idle
  cells rest "$scenario" iris-rf "$url" "$body"
}

if wanted bentoml; then
  say "bentoml"
  venv=$(peer_venv bentoml)
  export BENTOML_HOME=$work/bentoml/home BENTOML_DO_NOT_TRACK=true
  "$venv/bin/python" bench/train.py --framework bentoml
  port=$($HARNESS free-port)
  start_server bentoml 'Starting production HTTP BentoServer' \
    "$venv/bin/bentoml" serve bentoml_service:Iris --working-dir "$ROOT/bench" --host 127.0.0.1 --port "$port"
  wait_ready "http://127.0.0.1:$port/readyz"
  expect_status 200 "bentoml: predict" "http://127.0.0.1:$port/predict_rf" "$BENTO_BODY"
  $HARNESS meta --results "$results" "version:bentoml=$(peer_version "$venv" bentoml)" \
    "version:scikit-learn (peers)=$(peer_version "$venv" scikit-learn)" \
    "label:bentoml=BentoML $(peer_version "$venv" bentoml), scikit-learn (no security)"
  time_peer bentoml "http://127.0.0.1:$port/predict_rf" bentoml
  if [ "$peer_timed" = 1 ]; then
    cells rest bentoml iris-lr "http://127.0.0.1:$port/predict_lr" "$BENTO_BODY"
    memory bentoml after
  fi
  stop_server
  unset BENTOML_HOME
fi

if wanted mlserver; then
  say "mlserver"
  venv=$(peer_venv mlserver)
  mls_models=$work/mlserver/models
  "$venv/bin/python" bench/train.py --framework mlserver --out "$mls_models"
  port=$($HARNESS free-port) grpc_port=$($HARNESS free-port) metrics_port=$($HARNESS free-port)
  printf '{"host": "127.0.0.1", "http_port": %s, "grpc_port": %s, "metrics_port": %s}\n' \
    "$port" "$grpc_port" "$metrics_port" >"$mls_models/settings.json"
  start_server mlserver 'HTTP server running on' "$venv/bin/mlserver" start "$mls_models"
  for m in iris-rf iris-lr; do wait_ready "http://127.0.0.1:$port/v2/models/$m/ready"; done
  expect_status 200 "mlserver: infer" "http://127.0.0.1:$port/v2/models/iris-rf/infer" "$V2_BODY"
  $HARNESS meta --results "$results" "version:mlserver=$(peer_version "$venv" mlserver)" \
    "version:uvloop (mlserver)=$(peer_version "$venv" uvloop)" \
    "label:mlserver=MLServer $(peer_version "$venv" mlserver), scikit-learn (no security)"
  time_peer mlserver "http://127.0.0.1:$port/v2/models/iris-rf/infer" v2
  if [ "$peer_timed" = 1 ]; then
    cells rest mlserver iris-lr "http://127.0.0.1:$port/v2/models/iris-lr/infer" "$V2_BODY"
    memory mlserver after
  fi
  stop_server
fi

# The onnxruntime peers: each serves fixtures/models/iris_rf_nozipmap.onnx (bench/peers/).
for s in pytriton pytriton-batching; do
  wanted "$s" || continue
  say "$s"
  venv=$(peer_venv pytriton)
  # Triton's Python backend stub embeds a libpython 3.x found by the loader; it must be the
  # venv's own CPython, or that interpreter meets a newer standard library and the model
  # fails to load (Debian's libpython 3.11.2 beside pyenv's 3.11.7 here).
  libdir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
  port=$($HARNESS free-port) grpc_port=$($HARNESS free-port) metrics_port=$($HARNESS free-port)
  flags=()
  [ "$s" = pytriton-batching ] && flags=(--dynamic-batching)
  start_server "$s" '^pytriton: listening on ' env LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$venv/bin/python" "$ROOT/bench/peers/pytriton_server.py" --http-port "$port" --grpc-port "$grpc_port" \
    --metrics-port "$metrics_port" --workspace "$work/$s/workspace" "${flags[@]}"
  wait_ready "http://127.0.0.1:$port/v2/models/iris-rf/ready"
  triton_version=$(curl -sf --max-time 5 "http://127.0.0.1:$port/v2" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("version", "?"))')
  $HARNESS meta --results "$results" "version:nvidia-pytriton=$(peer_version "$venv" nvidia-pytriton) (tritonserver $triton_version)" \
    "version:onnxruntime (peers)=$(peer_version "$venv" onnxruntime)" \
    "label:pytriton=Triton $triton_version via PyTriton $(peer_version "$venv" nvidia-pytriton), onnxruntime (no security)" \
    "label:pytriton-batching=Triton $triton_version via PyTriton $(peer_version "$venv" nvidia-pytriton), onnxruntime, dynamic batching (no security)"
  time_peer "$s" "http://127.0.0.1:$port/v2/models/iris-rf/infer" v2 probabilities
  if [ "$peer_timed" = 1 ]; then memory "$s" after; fi
  stop_server
done

for s in kserve kserve-2w; do
  wanted "$s" || continue
  say "$s"
  venv=$(peer_venv kserve)
  workers=1
  [ "$s" = kserve-2w ] && workers=2
  port=$($HARNESS free-port)
  start_server "$s" 'Started server process' "$venv/bin/python" "$ROOT/bench/peers/kserve_server.py" \
    --http_port "$port" --workers "$workers"
  wait_ready "http://127.0.0.1:$port/v2/models/iris-rf/ready"
  $HARNESS meta --results "$results" "version:kserve=$(peer_version "$venv" kserve)" \
    "version:onnxruntime (peers)=$(peer_version "$venv" onnxruntime)" \
    "label:$s=KServe $(peer_version "$venv" kserve) ModelServer, onnxruntime, $workers worker$([ "$workers" = 1 ] || echo s) (no security)"
  time_peer "$s" "http://127.0.0.1:$port/v2/models/iris-rf/infer" v2 probabilities
  if [ "$peer_timed" = 1 ]; then memory "$s" after; fi
  stop_server
done

for s in bentoml-onnx bentoml-onnx-2w; do
  wanted "$s" || continue
  say "$s"
  venv=$(peer_venv bentoml)
  workers=1
  [ "$s" = bentoml-onnx-2w ] && workers=2
  port=$($HARNESS free-port)
  start_server "$s" 'Starting production HTTP BentoServer' env BENCH_WORKERS="$workers" \
    BENTOML_HOME="$work/$s/home" BENTOML_DO_NOT_TRACK=true \
    "$venv/bin/bentoml" serve bentoml_onnx_service:IrisOnnx --working-dir "$ROOT/bench/peers" --host 127.0.0.1 --port "$port"
  wait_ready "http://127.0.0.1:$port/readyz"
  $HARNESS meta --results "$results" "version:bentoml=$(peer_version "$venv" bentoml)" \
    "version:onnxruntime (peers)=$(peer_version "$venv" onnxruntime)" \
    "label:$s=BentoML $(peer_version "$venv" bentoml), onnxruntime, $workers worker$([ "$workers" = 1 ] || echo s) (no security)"
  time_peer "$s" "http://127.0.0.1:$port/predict_rf" bentoml probabilities
  if [ "$peer_timed" = 1 ]; then memory "$s" after; fi
  stop_server
done

if wanted rayserve; then
  say "rayserve"
  venv=$(peer_venv rayserve)
  port=$($HARNESS free-port)
  mkdir -p "$work/ray"
  start_server rayserve '^rayserve: listening on ' "$venv/bin/python" "$ROOT/bench/peers/rayserve_app.py" \
    --port "$port" --temp-dir "$work/ray"
  $HARNESS meta --results "$results" "version:ray=$(peer_version "$venv" ray)" \
    "version:onnxruntime (peers)=$(peer_version "$venv" onnxruntime)" \
    "label:rayserve=Ray Serve $(peer_version "$venv" ray), onnxruntime, 1 replica (no security)"
  time_peer rayserve "http://127.0.0.1:$port/v2/models/iris-rf/infer" v2 probabilities
  if [ "$peer_timed" = 1 ]; then memory rayserve after; fi
  stop_server
fi

# ---------------------------------------------------------------- report
if [ "$smoke" = 1 ]; then
  report=${output:-$work/report.md}
  $HARNESS report --results "$results" --output "$report" --standalone --command "$invocation"
  $HARNESS check "$report" --expect palisade:iris-rf --expect ceiling
  say "smoke passed in $((SECONDS - build_done)) s (plus $((build_done - started)) s of cargo build)"
else
  report=${output:-BENCHMARKS.md}
  $HARNESS report --results "$results" --output "$report" --command "$invocation"
  mkdir -p "$ROOT/bench/.work"
  cp "$results" "$ROOT/bench/.work/last-results.jsonl"
  $HARNESS check "$report"
  say "done in $((SECONDS - build_done)) s (plus $((build_done - started)) s of cargo build); report in $report"
fi
