-- Record one attempt of a callback delivery and where that leaves it, atomically: scheduled
-- (the next attempt's task enqueued and its time in the due set), delivered, or dead-lettered.
-- Refused (nothing written) unless the delivery is still scheduled at the attempt that ran:
-- a task that is stale (re-enqueued by the sweep after it had already run) changes nothing.
-- KEYS: 1 delivery hash, 2 its attempts list, 3 due set, 4 the tenant's dead letters,
--       5 ARQ queue, 6 next attempt's ARQ job key, 7 its ARQ result key, 8 job's deliveries
-- ARGV: 1 series, 2 attempt index that ran, 3 the attempt as JSON, 4 new status
--       (scheduled | delivered | dead_lettered), 5 now ms, 6 seconds to keep it,
--       7 due member, 8 HTTP status ('' none), 9 error ('' none), 10 dead-letter reason,
--       11 next attempt index, 12 next attempt ms, 13 next task id, 14 its payload,
--       15 its expiry ms, 16 dead letters recorded before this ms are dropped from the list
-- Returns 1 recorded, 0 stale.
local d = redis.call('HMGET', KEYS[1], 'status', 'series', 'attempt')
if d[1] ~= 'scheduled' or d[2] ~= ARGV[1] or d[3] ~= ARGV[2] then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -200, -1)
redis.call('HINCRBY', KEYS[1], 'attempts_total', 1)
redis.call('HINCRBY', KEYS[1], 'tries', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_at_ms', ARGV[5],
  'last_status_code', ARGV[8], 'last_error', ARGV[9])
if ARGV[4] == 'scheduled' then
  redis.call('HSET', KEYS[1], 'attempt', ARGV[11], 'next_at_ms', ARGV[12])
  redis.call('ZADD', KEYS[3], ARGV[12], ARGV[7])
  enqueue(KEYS[5], KEYS[6], KEYS[7], ARGV[13], ARGV[14], ARGV[15], ARGV[12])
else
  redis.call('HSET', KEYS[1], 'next_at_ms', '')
  redis.call('ZREM', KEYS[3], ARGV[7])
  if ARGV[4] == 'dead_lettered' then
    redis.call('HSET', KEYS[1], 'dead_at_ms', ARGV[5], 'dead_reason', ARGV[10])
    redis.call('ZADD', KEYS[4], ARGV[5], ARGV[7])
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[16])
  else
    redis.call('HSET', KEYS[1], 'delivered_at_ms', ARGV[5])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[8], ARGV[6])
return 1
