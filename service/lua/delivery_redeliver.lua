-- Start a new attempt series of a finished (delivered or dead-lettered) callback delivery:
-- same webhook-id, same body, the schedule from its first step, the first attempt now.
-- Zero counters and cleared fields are deleted, not stored empty (see service/deliveries.py);
-- the time it was delivered, which its status no longer implies, is kept in delivered_at_ms.
-- KEYS: 1 delivery hash, 2 due set, 3 the tenant's dead letters, 4 ARQ queue,
--       5 the first attempt's ARQ job key, 6 its ARQ result key, 7 attempts list (earlier
--       versions')
-- ARGV: 1 the series it is at (a compare-and-set), 2 now ms, 3 due member, 4 task id,
--       5 payload, 6 expiry ms, 7 seconds to keep it, 8 when it was delivered ('' never)
-- Returns 1 started, 0 still being delivered (or it moved on meanwhile), -1 no such delivery.
local d = redis.call('HMGET', KEYS[1], 'status', 'series')
if not d[1] then
  return -1
end
if d[1] == 'scheduled' or (d[2] or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'scheduled', 'series', tonumber(ARGV[1]) + 1,
  'next_at_ms', ARGV[2], 'updated_at_ms', ARGV[2])
redis.call('HDEL', KEYS[1], 'attempt', 'tries', 'dead_at_ms', 'dead_reason', 'last_error',
  'last_status_code')
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'delivered_at_ms', ARGV[8])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
enqueue(KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[5], ARGV[6], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[7], ARGV[7])
return 1
