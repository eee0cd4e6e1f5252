-- fal refused our key (401/403) for a job being submitted: nothing was created. The job goes
-- back to queued, first in its tenant's line, and gives its lease back (dispatch is paused).
-- KEYS: 1 job hash, 2 events stream, 3 the job's transitions stream (a job recorded before the
--       history field: see step.lua append_event)
-- ARGV: 1 the budget's cfg, 2 now ms, 3 events stream MAXLEN, 4 the job's changed channel,
--       5 reason
-- Returns 1 requeued, 0 the job was no longer submitting.
local job = redis.call('HMGET', KEYS[1], 'status', 'id', 'tenant', 'endpoint')
if job[1] ~= 'submitting' then
  return 0
end
local cfg = cjson.decode(ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at_ms', ARGV[2])
redis.call('HDEL', KEYS[1], 'submit_pending_since_ms')
append_event(KEYS[2], KEYS[1], KEYS[3], ARGV[4], ARGV[3], job[2], job[3], job[4] or '',
  'submitting', 'queued', ARGV[2], ARGV[5])
release(cfg, job[3], job[2])
park(cfg, job[3], job[2], true)
-- Paused, this admits nothing; but the pause may have ended since this submit was refused.
admit_next(cfg, tonumber(ARGV[2]))
return 1
