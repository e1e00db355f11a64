-- wrk script for the benchmark harness (bench/run.sh): POSTs the JSON body in the file
-- named by $BENCH_BODY_FILE, with `Authorization: Bearer $BENCH_TOKEN` when that is set,
-- and prints one line `BENCH_RESULT {json}` with the counts and latency percentiles in
-- microseconds for bench/harness.py to read.

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  -- $BENCH_BINARY_HEADER_LENGTH: the body uses the binary tensor extension, its JSON part
  -- being that many bytes.
  local header_length = os.getenv("BENCH_BINARY_HEADER_LENGTH")
  if header_length and header_length ~= "" then
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = header_length
  else
    wrk.headers["Content-Type"] = "application/json"
  end
end

local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"mean_us":%.2f,"p50_us":%.2f,"p90_us":%.2f,"p99_us":%.2f,"max_us":%.2f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
