#!/usr/bin/env bash
# Strict audit's request throughput with sealing and archival running (issue 19: "strict
# audit's request throughput does not drop with sealing and archival running").
#
# Usage: bench/archive.sh [--seconds N] [--rounds N] [--connections N] [--keep]
#   defaults: 10 s cells after 2 s of warm-up, 2 rounds, 64 connections (wrk, REST, iris RF)
#
# One release server at a time, the same home (RS256 JWT, an ALLOW policy, strict audit at
# Metadata, 4 MiB segments so that the trail rotates every few thousand records), in three
# configurations, interleaved round by round:
#   plain     seal.enabled: false (segments rotate and stay plain)
#   sealed    the sealer looks for rotated segments every second
#   archived  the same, and the archiver copies sealed segments and checkpoints every second
#             to moto's S3 server on 127.0.0.1 (.venv/s3, from scripts/install-test-deps.sh)
# After each cell the server's /metrics give what was sealed and archived during it. All
# traffic goes to 127.0.0.1 and every run is bounded in time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
seconds=10 rounds=2 connections=64 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a value}; shift ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift ;;
    --connections) connections=${2:?--connections needs a value}; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/archive.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
die() { printf 'bench/archive.sh: error: %s\n' "$*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
moto=$ROOT/.venv/s3/bin/moto_server
[ -x "$moto" ] || die "$moto is missing: run scripts/install-test-deps.sh"
# shellcheck source=bench/secure-home.sh
. bench/secure-home.sh
release_binaries
work_dir archive
moto_pid=""
trap '[ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null; work_dir_cleanup' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
"$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
deadline=$((SECONDS + 30))
until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
  [ "$SECONDS" -lt "$deadline" ] || die "moto did not listen on 127.0.0.1:$port"
  sleep 0.2
done
curl -sf -X PUT "http://127.0.0.1:$port/bench-audit" -o /dev/null || die "could not create the bucket"
printf '[default]\naws_access_key_id = bench\naws_secret_access_key = bench-secret\n' >"$work/s3-credentials"
chmod 600 "$work/s3-credentials"

mkdir -p "$work/model"
cp fixtures/models/iris_rf_nozipmap.onnx "$work/model/model.onnx"
printf 'name: iris-rf\nversion: "1.0.0"\nnamespace: bench\nowners: [owner@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n' \
  >"$work/model/palisade.yaml"
secure_home "$work" Metadata "$work/model"
base=$(cat "$work/platform.yaml")
printf '%s\n  segmentMaxBytes: 4194304\n  seal:\n    enabled: false\n' "$base" >"$work/plain.yaml"
printf '%s\n  segmentMaxBytes: 4194304\n  seal:\n    every: 1s\n' "$base" >"$work/sealed.yaml"
printf '%s\n  segmentMaxBytes: 4194304\n  seal:\n    every: 1s\n  archive:\n    bucket: bench-audit\n    prefix: bench\n    endpoint: http://127.0.0.1:%s\n    allowHttp: true\n    credentialsFile: %s\n    every: 1s\n' \
  "$base" "$port" "$work/s3-credentials" >"$work/archived.yaml"
body=$work/v2.json
printf '%s' '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}' >"$body"
token=$(cat "$work/token")

metric() { # NAME FILE: the sum of a metric's samples in a /metrics dump
  awk -v name="$1" '$1 == name || index($1, name "{") == 1 {s += $2} END {printf "%d\n", s}' "$2"
}

cell() { # CONFIG ROUND
  local config=$1 round=$2 tag=$1-$2
  rm -rf "$work/home/audit"
  "$PALISADE" --home "$work/home" serve --config "$work/$config.yaml" --policy-dir "$work/policies" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$work/$tag.log" 2>&1 &
  server_pid=$!
  local addr="" admin="" deadline=$((SECONDS + 60))
  until addr=$(grep -m1 '^palisade: listening on ' "$work/$tag.log" | awk '{print $4}') && [ -n "$addr" ] &&
    admin=$(grep -m1 '^palisade: admin listening on ' "$work/$tag.log" | awk '{print $5}') && [ -n "$admin" ]; do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$work/$tag.log" >&2; die "$tag: the server exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "$tag: the server did not start"
    sleep 0.2
  done
  until curl -sf -o /dev/null --max-time 5 "$addr/v2/health/ready"; do sleep 0.2; done
  BENCH_TOKEN=$token BENCH_BODY_FILE=$body wrk -t2 -c"$connections" -d2s -s bench/wrk.lua "$addr/v2/models/iris-rf/infer" >/dev/null
  BENCH_TOKEN=$token BENCH_BODY_FILE=$body wrk -t2 -c"$connections" -d"${seconds}s" -s bench/wrk.lua \
    "$addr/v2/models/iris-rf/infer" >"$work/$tag.load"
  # Let the sealer and the archiver catch up with the cell's last rotations.
  sleep 3
  curl -sf "$admin/metrics" >"$work/$tag.metrics"
  kill -INT "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  local rps
  rps=$(sed -n 's/^BENCH_RESULT //p' "$work/$tag.load" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert sum(r["errors"].values()) == 0, r
print("%.0f %.0f %.0f" % (r["requests"] / (r["duration_us"] / 1e6), r["p50_us"], r["p99_us"]))')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$config" "$round" $rps \
    "$(metric palisade_audit_sealed_segments_total "$work/$tag.metrics")" \
    "$(metric palisade_audit_archived_segments_total "$work/$tag.metrics")" \
    "$(metric palisade_audit_seal_backlog_segments "$work/$tag.metrics")" \
    "$(uptime | sed 's/.*load average: //; s/,.*//')"
}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, palisade $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo '+changes') (release), ${seconds} s cells at $connections connections"
echo
echo "| configuration | round | req/s | p50 (µs) | p99 (µs) | segments sealed | segments archived | seal backlog at the end | load (1 min) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
  for config in plain sealed archived; do
    cell "$config" "$round"
  done
done
