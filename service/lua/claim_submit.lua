-- Claim a job's submit to fal in one round trip: the common case of dispatch_job. The claim is
-- a transition to 'submitting' like any other: checked against the table, one event appended.
-- KEYS: 1 job hash, 2 events stream, 3 job transitions stream
-- ARGV: 1 statuses a submit may start from, space-separated (from jobs.TRANSITIONS),
--       2 the claimed status, 3 now ms, 4 reason, 5 events stream MAXLEN (approximate),
--       6 the job's changed channel
-- Returns {1, endpoint, input} claimed: the status is now
--           ARGV[2], submit_pending_since_ms = now, submit_attempts one more;
--         {0, current status} not claimable ('' when there is no such job);
--         {2, ''} an earlier submit's outcome is unknown (submit_pending_since_ms is set):
--           nothing changed, the caller decides whether the grace period has passed.
local job = redis.call('HMGET', KEYS[1], 'status', 'submit_pending_since_ms', 'submit_attempts',
  'endpoint', 'input', 'id', 'tenant')
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
append_event(KEYS[2], KEYS[3], ARGV[6], ARGV[5], job[6] or '', job[7] or '', job[4] or '',
  current, ARGV[2], ARGV[3], ARGV[4])
return {1, job[4] or '', job[5] or ''}
