-- Move a job between states only from an allowed state, atomically, optionally enqueuing
-- a follow-up ARQ task in the same step (so a crash can never record one without the other).
-- KEYS: 1 job hash, 2 job events list, 3 ARQ job key, 4 ARQ result key, 5 ARQ queue
-- ARGV: 1 allowed current statuses, space-separated ('*' = any)
--       2 new status ('' = keep the current one and only write fields)
--       3 now ms
--       4 follow-up ARQ task id ('' = none), 5 its payload, 6 its expiry ms
--       7 seconds to keep the job after this step ('' = no expiry change)
--       8 event to log when the move is refused ('' = none)
--       9 guard field, 10 its expected value: refuse unless the field holds exactly that
--         (a compare-and-set, so two racing claimants cannot both win; '' = no guard)
--       11 enqueue the follow-up only if this job field is set ('' = always)
--       12 when the follow-up may run, ms (its ARQ queue score)
--       13.. job hash field/value pairs to write with the move
-- Returns {1, previous status} applied; {0, current status} refused; {-1, ''} no such job.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {-1, ''}
end
local allowed = ARGV[1] == '*'
if not allowed then
  for status in string.gmatch(ARGV[1], '%S+') do
    if status == current then
      allowed = true
      break
    end
  end
end
if allowed and ARGV[9] ~= '' then
  allowed = (redis.call('HGET', KEYS[1], ARGV[9]) or '') == ARGV[10]
end
if not allowed then
  if ARGV[8] ~= '' then
    redis.call('RPUSH', KEYS[2], ARGV[8])
    redis.call('LTRIM', KEYS[2], -50, -1)
    redis.call('HINCRBY', KEYS[1], 'ignored_events', 1)
  end
  return {0, current}
end
-- updated_at_ms is the time of the last status change; bookkeeping writes leave it alone.
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at_ms', ARGV[3])
end
local follow_up = ARGV[4] ~= ''
if follow_up and ARGV[11] ~= '' then
  local condition = redis.call('HGET', KEYS[1], ARGV[11])
  follow_up = condition ~= false and condition ~= ''
end
if #ARGV >= 13 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 13))
end
if follow_up and redis.call('EXISTS', KEYS[3], KEYS[4]) == 0 then
  redis.call('PSETEX', KEYS[3], ARGV[6], ARGV[5])
  redis.call('ZADD', KEYS[5], ARGV[12], ARGV[4])
end
if ARGV[7] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return {1, current}
