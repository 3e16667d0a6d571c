-- Replays pre-generated signed Twilio webhooks (one "body<TAB>signature" per line).
-- Arguments after `--`: the data file and the number of wrk threads. Thread i takes every
-- line i, i+n, i+2n… so no two threads send the same CallSid; `wraps` counts a thread that
-- ran out of lines and started over (a repeated CallSid, which the real app deduplicates).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = "",
  }
  queue, position, wraps, non200 = {}, 0, 0, 0
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == index - 1 then
      local body, signature = line:match("^([^\t]*)\t(.*)$")
      headers["X-Twilio-Signature"] = signature
      queue[#queue + 1] = wrk.format("POST", "/ivr/voice", headers, body)
    end
    n = n + 1
  end
end

function request()
  position = position + 1
  if position > #queue then
    position, wraps = 1, wraps + 1
  end
  return queue[position]
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local wrapped, bad = 0, 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + thread:get("wraps")
    bad = bad + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "non200": %d, ' ..
    '"wraps": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, bad, wrapped, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
