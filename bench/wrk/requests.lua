-- wrk script for vidhook's benchmark (bench/run.py writes the inputs, reads the JSON line).
--
-- Environment:
--   BENCH_REQUESTS  file of requests, one per line: path TAB (name TAB value)* TAB body.
--                   One line: the same request every time. Several: each sent once, in order.
--   BENCH_RATE      requests per second for this thread (0: as fast as the connections go).
--                   Paced runs hand out send slots at a fixed interval, so the offered rate
--                   holds however fast the server answers (open loop while connections last).
--   BENCH_MAX       stop after this many responses (0: run for the -d duration).
-- Prints one line `BENCH_RESULT {json}` with throughput, latency percentiles and errors.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local function split_tabs(line)
  local fields = {}
  for field in string.gmatch(line, "([^\t]*)\t?") do
    fields[#fields + 1] = field
  end
  -- gmatch yields a trailing empty match after the last field
  if fields[#fields] == "" then fields[#fields] = nil end
  return fields
end

local requests = {}
local file = assert(io.open(assert(os.getenv("BENCH_REQUESTS"), "BENCH_REQUESTS unset"), "r"))
for line in file:lines() do
  if line ~= "" then
    local fields = split_tabs(line)
    local headers = {}
    for i = 2, #fields - 1, 2 do
      headers[fields[i]] = fields[i + 1]
    end
    requests[#requests + 1] = wrk.format("POST", fields[1], headers, fields[#fields])
  end
end
file:close()

local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local max_responses = tonumber(os.getenv("BENCH_MAX") or "0")
local next_index = 1
local responses = 0
local next_slot_ms = nil

if #requests == 1 then
  local only = requests[1]
  request = function() return only end
else
  request = function()
    local req = requests[next_index]
    next_index = next_index % #requests + 1
    return req
  end
end

if rate > 0 then
  local interval_ms = 1000 / rate
  delay = function()
    local now = now_ms()
    if next_slot_ms == nil or next_slot_ms < now - 1000 then
      next_slot_ms = now
    end
    local wait = next_slot_ms - now
    next_slot_ms = next_slot_ms + interval_ms
    if wait < 0 then return 0 end
    return wait
  end
end

if max_responses > 0 then
  response = function(status, headers, body)
    responses = responses + 1
    if responses >= max_responses then
      wrk.thread:stop()
    end
  end
end

done = function(summary, latency, requests_stats)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_s": %.4f, "rps": %.2f, "p50_ms": %.3f, ' ..
    '"p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
