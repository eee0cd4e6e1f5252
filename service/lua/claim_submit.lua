-- Claim a job's submit to fal in one round trip: the common case of dispatch_job.
-- KEYS: 1 job hash
-- ARGV: 1 statuses a submit may start from, space-separated, 2 the claimed status,
--       3 now ms
-- Returns {1, endpoint, input} claimed: the status is now
--           ARGV[2], submit_pending_since_ms = now, submit_attempts one more;
--         {0, current status} not claimable ('' when there is no such job);
--         {2, ''} an earlier submit's outcome is unknown (submit_pending_since_ms is set):
--           nothing changed, the caller decides whether the grace period has passed.
local job = redis.call('HMGET', KEYS[1], 'status', 'submit_pending_since_ms', 'submit_attempts',
  'endpoint', 'input')
local current = job[1]
if not current then
  return {0, ''}
end
local allowed = false
for status in string.gmatch(ARGV[1], '%S+') do
  if status == current then
    allowed = true
    break
  end
end
if not allowed then
  return {0, current}
end
if job[2] and job[2] ~= '' then
  return {2, ''}
end
-- As transition.lua: updated_at_ms is the time of the last status change.
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at_ms', ARGV[3],
  'submit_pending_since_ms', ARGV[3], 'submit_attempts', (tonumber(job[3]) or 0) + 1)
return {1, job[4] or '', job[5] or ''}
