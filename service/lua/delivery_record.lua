-- Record one attempt of a callback delivery and where that leaves it, atomically: scheduled
-- (the next attempt's task enqueued and its time in the due set), delivered, or dead-lettered.
-- Refused (nothing written) unless the delivery is still scheduled at the attempt that ran:
-- a task that is stale (re-enqueued by the sweep after it had already run) changes nothing.
-- The attempt goes to the end of the hash's `log` (one line each, the last ARGV[13] kept);
-- what the last line says (its time, HTTP status, error) is not stored again, nor is a field
-- the key or the status implies (see service/deliveries.py), so those fields are deleted:
-- a delivery written by an earlier version has them.
-- KEYS: 1 delivery hash, 2 its attempts list (earlier versions'), 3 due set,
--       4 the tenant's dead letters, 5 ARQ queue, 6 next attempt's ARQ job key,
--       7 its ARQ result key
-- ARGV: 1 series, 2 attempt index that ran, 3 the attempt's log line, 4 new status
--       (scheduled | delivered | dead_lettered), 5 now ms, 6 seconds to keep it,
--       7 due member, 8 dead-letter reason, 9 next attempt index, 10 next attempt ms,
--       11 next task id, 12 its payload, 13 log lines kept, 14 its expiry ms,
--       15 dead letters recorded before this ms are dropped from the list
-- Returns 1 recorded, 0 stale.
local d = redis.call('HMGET', KEYS[1], 'status', 'series', 'attempt')
if d[1] ~= 'scheduled' or (d[2] or '0') ~= ARGV[1] or (d[3] or '0') ~= ARGV[2] then
  return 0
end

-- `text`'s last `count` lines.
local function last_lines(text, count)
  local breaks = {}
  for at in string.gmatch(text, '()\n') do
    breaks[#breaks + 1] = at
  end
  if #breaks < count then
    return text
  end
  return string.sub(text, breaks[#breaks + 1 - count] + 1)
end

local log = redis.call('HGET', KEYS[1], 'log')
if log then
  log = last_lines(log .. '\n' .. ARGV[3], tonumber(ARGV[13]))
else
  log = ARGV[3]
end
redis.call('HSET', KEYS[1], 'log', log, 'status', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'attempts_total', 1)
redis.call('HINCRBY', KEYS[1], 'tries', 1)
redis.call('HDEL', KEYS[1], 'updated_at_ms', 'last_status_code', 'last_error', 'dead_at_ms')
if ARGV[4] == 'scheduled' then
  redis.call('HSET', KEYS[1], 'attempt', ARGV[9], 'next_at_ms', ARGV[10])
  redis.call('ZADD', KEYS[3], ARGV[10], ARGV[7])
  enqueue(KEYS[5], KEYS[6], KEYS[7], ARGV[11], ARGV[12], ARGV[14], ARGV[10])
else
  redis.call('HDEL', KEYS[1], 'next_at_ms')
  redis.call('ZREM', KEYS[3], ARGV[7])
  if ARGV[4] == 'dead_lettered' then
    redis.call('HSET', KEYS[1], 'dead_reason', ARGV[8])
    redis.call('ZADD', KEYS[4], ARGV[5], ARGV[7])
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[15])
  else
    redis.call('HDEL', KEYS[1], 'delivered_at_ms')
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
