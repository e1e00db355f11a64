#!/usr/bin/env bash
# A shadow under load: the caller's p50/p99 through `traffic: [iris-lr]` without a shadow,
# and with a shadow that is a model (iris-rf), slow (an upstream answering after 50 ms),
# failing (an upstream answering 500) or hanging (an upstream that never answers, cut off
# at its 2 s timeout). Issue 14: "a shadow adds nothing to the caller's p99".
#
# Usage: bench/shadow.sh [--duration D] [--warmup D] [--connections LIST] [--debug]
#   defaults: 5s cells after 1s of warm-up, connections 1,16; release build.
# All traffic goes to 127.0.0.1 and every load run is bounded in time (wrk through
# bench/harness.py). Prints one line per cell; the numbers go to BENCHMARKS.md by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
duration=5s warmup=1s connections=1,16 profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?}; shift ;;
    --warmup) warmup=${2:?}; shift ;;
    --connections) connections=${2:?}; shift ;;
    --debug) profile=debug ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/shadow.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "bench/shadow.sh: wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
flags=(--locked)
[ "$profile" = release ] && flags+=(--release)
cargo build -q "${flags[@]}" -p palisade-cli
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PALISADE=$target_dir/$profile/palisade
HARNESS="python3 $ROOT/bench/harness.py"

work=$(mktemp -d "${TMPDIR:-/tmp}/palisade-shadow.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The upstream shadows: one V2 server per behaviour, on loopback ports it picks itself.
cat >"$work/upstream.py" <<'EOF'
import http.server, json, sys, time
mode = sys.argv[1]
ANSWER = json.dumps({"model_name": "shadow", "outputs": [
    {"name": "label", "shape": [1], "datatype": "INT64", "data": [0]},
    {"name": "probabilities", "shape": [1, 3], "datatype": "FP32", "data": [0.9, 0.05, 0.05]}]}).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if mode == "hang":
            time.sleep(3600)
        if mode == "slow":
            time.sleep(0.05)
        status, body = (500, b'{"error": "failing on purpose"}') if mode == "fail" else (200, ANSWER)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
declare -A port
for mode in slow fail hang; do
  python3 "$work/upstream.py" "$mode" >"$work/$mode.port" &
  pids+=($!)
  until [ -s "$work/$mode.port" ]; do sleep 0.05; done
  port[$mode]=$(head -1 "$work/$mode.port")
done

home=$work/home
P=("$PALISADE" --home "$home")
bundle() { # dir name body [fixture]
  mkdir -p "$work/$1"
  [ -n "${4:-}" ] && cp "fixtures/models/$4.onnx" "$work/$1/model.onnx"
  printf 'name: %s\nversion: "1"\nowners: [alice@example.com]\n%s' "$2" "$3" >"$work/$1/palisade.yaml"
  "${P[@]}" build "$work/$1" >/dev/null
}
onnx='model: {path: model.onnx, format: onnx}\n'
bundle lr iris-lr "$(printf "$onnx")" iris_lr_nozipmap
bundle rf iris-rf "$(printf "$onnx")" iris_rf_nozipmap
for mode in slow fail hang; do
  bundle "up-$mode" "shadow-$mode" "model:
  format: upstream
  upstream: {url: 'http://127.0.0.1:${port[$mode]}', model: shadow, timeout: 2s, maxConcurrency: 64}
  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]
  outputs:
    - {name: label, datatype: INT64, shape: [-1]}
    - {name: probabilities, datatype: FP32, shape: [-1, 3]}
"
done
bundle g-none no-shadow "traffic: [{model: iris-lr, weight: 1}]
"
for shadow in iris-rf shadow-slow shadow-fail shadow-hang; do
  bundle "g-$shadow" "with-$shadow" "traffic: [{model: iris-lr, weight: 1}]
shadow: {model: $shadow, percent: 100}
"
done
# Relaxed audit: in strict mode every answer waits for its record's fsync, which on a shared
# disk drowns the difference being measured (the records are written all the same).
printf 'upstream:\n  allowedHosts: ["127.0.0.1"]\naudit:\n  mode: relaxed\n' >"$work/platform.yaml"
token=$("${P[@]}" token issue --email alice@example.com --ttl 1h --config "$work/platform.yaml")

"${P[@]}" serve --config "$work/platform.yaml" --listen 127.0.0.1:0 >"$work/serve.log" 2>&1 &
server=$!
pids+=("$server")
until grep -q '^palisade: listening on ' "$work/serve.log"; do
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
addr=$(grep -m1 '^palisade: listening on ' "$work/serve.log" | awk '{print $4}')
body=$work/row.json
printf '%s' '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' >"$body"
export BENCH_TOKEN=$token
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), palisade $(git rev-parse --short HEAD) ($profile)"
for model in iris-lr no-shadow with-iris-rf with-shadow-slow with-shadow-fail with-shadow-hang; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" --data-binary "@$body" "$addr/v2/models/$model/infer")
  [ "$status" = 200 ] || { echo "bench/shadow.sh: $model answered $status" >&2; exit 1; }
  for c in ${connections//,/ }; do
    printf '%-18s c=%-3s ' "$model" "$c"
    $HARNESS cell --results "$work/results.jsonl" --scenario shadow --model "$model" --protocol rest \
      --connections "$c" --duration "$duration" --warmup "$warmup" --pid "$server" --url "$addr/v2/models/$model/infer" \
      --body-file "$body" --wrk-threads 2 | tail -1
  done
done
