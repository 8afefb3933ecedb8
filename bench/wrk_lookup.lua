-- wrk script for the API benchmark: GET <prefix><id>?n=10 with ids drawn at random from
-- BENCH_IDS ids (user_00000000 ...), and one JSON line of results at the end.
local prefix = os.getenv("BENCH_PATH_PREFIX") or "/v1/recommendations/user_"
local ids = tonumber(os.getenv("BENCH_IDS") or "1000")
local suffix = os.getenv("BENCH_SUFFIX") or "?n=10"
local thread_counter = 0

setup = function(thread)
  thread_counter = thread_counter + 1
  thread:set("seed", thread_counter)
end

init = function(args)
  math.randomseed(seed * 7919)
end

request = function()
  return wrk.format("GET", prefix .. string.format("%08d", math.random(0, ids - 1)) .. suffix)
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "errors": %d, "non_2xx": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, errors, summary.errors.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
