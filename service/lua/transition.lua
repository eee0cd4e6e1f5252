-- One step of a job's state machine, atomically: check the move, write the job, append its
-- event, enqueue every follow-up task, so a crash can never record one without the others.
-- With no new status it is a bookkeeping write instead: fields (and follow-ups) only, no event.
-- KEYS: 1 job hash, 2 job notes list, 3 events stream, 4 the job's transitions stream (jobs
--       recorded before the history field only: see append_event), 5 ARQ queue,
--       6 active jobs by deadline,
--       7.. for each follow-up task: its ARQ job key, its ARQ result key, its mark's sorted set
-- ARGV: 1 statuses the move may start from, space-separated (derived from jobs.TRANSITIONS
--         for the new status; '*' = any, for bookkeeping writes)
--       2 new status ('' = keep the current one and only write fields)
--       3 now ms, 4 reason, 5 events stream MAXLEN (approximate), 6 the job's changed channel
--       7 seconds to keep the job after this step ('' = no expiry change; set = the job has
--         ended, so it also leaves the active index)
--       8 note to log when the move is refused ('' = none)
--       9 guard field, 10 its expected value: refuse unless the field holds exactly that
--         (a compare-and-set, so two racing claimants cannot both win; '' = no guard)
--       11 number of follow-up tasks n
--       12 the budget's cfg (budget.lua), given with a terminal move: the job's lease and
--         place in line are given back and the next parked job admitted ('' = none)
--       13 '1': refund the job's counted spend (it never reached fal)
--       14 .. 13+6n each follow-up: task id, payload, expiry ms, run-at ms (its ARQ queue
--         score), its condition (step.lua condition_holds), its mark's member ('' = none)
--       14+6n .. job hash field/value pairs to write with the move
-- Returns {1, previous status, event id ('' for a bookkeeping write)} applied;
--         {0, current status} refused; {-1, ''} no such job.
local ACTIVE_ONLY_FIELDS = {'input_sha256', 'submit_pending_since_ms', 'submit_unclear_cause',
  'parked', 'admissions', 'unknown_request_streak'}
local job = redis.call('HMGET', KEYS[1], 'status', 'id', 'tenant', 'endpoint')
local current = job[1]
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
local follow_ups = tonumber(ARGV[11])
local first_field = 14 + follow_ups * 6
-- An empty value clears its field: a finished job keeps no empty fields (readers take absent
-- and '' alike).
for i = first_field, #ARGV - 1, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local event_id = ''
if ARGV[2] ~= '' then
  -- updated_at_ms is the time of the last status change; bookkeeping writes leave it alone.
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at_ms', ARGV[3])
  event_id = append_event(KEYS[3], KEYS[1], KEYS[4], ARGV[6], ARGV[5], job[2] or '',
    job[3] or '', job[4] or '', current, ARGV[2], ARGV[3], ARGV[4])
  if ARGV[2] == 'submitted' then
    -- The in-flight-at-fal gauge's set (metrics.py), in this step rather than a round trip of
    -- its own; the job key is '<prefix>job:<id>', so the prefix is what precedes 'job:<id>'.
    local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #('job:' .. (job[2] or '')))
    redis.call('ZADD', prefix .. 'atfal', ARGV[3], job[2] or '')
  end
end
enqueue_follow_ups(KEYS[1], KEYS[5], follow_ups, 14, 7)
if ARGV[12] ~= '' then
  -- In the same step as the terminal move, so a slot is never held by an ended job nor
  -- given back twice.
  job_ended(cjson.decode(ARGV[12]), job[3] or '', job[2] or '', tonumber(ARGV[3]), ARGV[13] == '1')
end
if ARGV[7] ~= '' then
  -- What only an active job needs (finding its request at fal, its place in line, a pending
  -- submit) is not kept for the retention period.
  redis.call('HDEL', KEYS[1], unpack(ACTIVE_ONLY_FIELDS))
  redis.call('ZREM', KEYS[6], job[2] or '')
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  -- A job recorded before the history field has its own stream: it goes with the job.
  redis.call('EXPIRE', KEYS[4], ARGV[7])
end
return {1, current, event_id}
