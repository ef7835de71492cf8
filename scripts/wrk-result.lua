-- The RESULT line the bench scripts parse (scripts/bench-lib.sh `field`),
-- shared by the wrk scripts: each sets `done = dofile(...)` on this file.
-- Latencies in ms; errors are connect/read/write/timeout, status_errors
-- the non-2xx/3xx answers.
return function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d status_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
