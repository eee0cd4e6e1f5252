-- Enqueue a task that may have been lost, unless ARQ holds it queued or running. ARQ drops a
-- task whose job key expired, and keeps a result for one that failed without a retry; either
-- way the task id is free to run again once that result is gone.
-- KEYS: 1 ARQ queue, 2 ARQ job key, 3 ARQ result key, 4 ARQ in-progress key
-- ARGV: 1 task id, 2 payload, 3 expiry ms, 4 run-at ms
-- Returns 1 enqueued, 0 already queued or running.
if redis.call('EXISTS', KEYS[4]) > 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) > 0 and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[3])
redis.call('PSETEX', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return 1
