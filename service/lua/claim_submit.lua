-- Claim a job's submit to fal in one round trip: the common case of dispatch_job. The claim is
-- a transition to 'submitting' like any other: checked against the table, one event appended.
-- KEYS: 1 job hash, 2 events stream, 3 the job's transitions stream (a job recorded before the
--       history field: see step.lua append_event)
-- ARGV: 1 statuses a submit may start from, space-separated (from jobs.TRANSITIONS),
--       2 the claimed status, 3 now ms, 4 reason, 5 events stream MAXLEN (approximate),
--       6 the job's changed channel,
--       7 the budget's cfg (budget.lua; '' = no budget: claim whenever the status allows)
-- Returns {1, endpoint, input} claimed: the status is now
--           ARGV[2], submit_pending_since_ms = now, submit_attempts one more;
--         {0, current status} not claimable ('' when there is no such job);
--         {2, ''} an earlier submit's outcome is unknown (submit_pending_since_ms is set):
--           nothing changed, the caller decides whether the grace period has passed;
--         {3, why} the job waits for a slot ('waiting') or for dispatch to resume ('paused'):
--           it is (back) in its tenant's line, queued, holding no lease.
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
if ARGV[7] ~= '' then
  local cfg = cjson.decode(ARGV[7])
  local job_id, tenant = job[6] or '', job[7] or ''
  local now = tonumber(ARGV[3])
  if redis.call('EXISTS', cfg.p .. 'dispatch:paused') == 1 then
    -- fal refused our key: the job waits, first in its tenant's line, without a lease.
    release(cfg, tenant, job_id)
    park(cfg, tenant, job_id, true)
    if current ~= 'queued' then
      redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at_ms', ARGV[3])
      append_event(KEYS[2], KEYS[1], KEYS[3], ARGV[6], ARGV[5], job_id, tenant, job[4] or '',
        current, 'queued', ARGV[3], 'dispatch_paused')
    end
    return {3, 'paused'}
  end
  if not holds_lease(cfg, job_id) then
    -- A dispatch task that was not admitted (re-enqueued by the sweep): it may go only if
    -- nobody waits before it and a slot is free; otherwise it joins the line.
    if redis.call('LLEN', cfg.p .. 'ready') == 0 and slot_free(cfg, tenant, now) then
      acquire(cfg, tenant, job_id, now)
    else
      park(cfg, tenant, job_id, false)
      return {3, 'waiting'}
    end
  end
end
-- As transition.lua: updated_at_ms is the time of the last status change.
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at_ms', ARGV[3],
  'submit_pending_since_ms', ARGV[3], 'submit_attempts', (tonumber(job[3]) or 0) + 1)
append_event(KEYS[2], KEYS[1], KEYS[3], ARGV[6], ARGV[5], job[6] or '', job[7] or '',
  job[4] or '', current, ARGV[2], ARGV[3], ARGV[4])
return {1, job[4] or '', job[5] or ''}
