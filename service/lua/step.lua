-- Shared by every script that records a job's state (store.py puts it in front of each, since
-- one Redis script cannot call another). Functions only: it runs nothing by itself.

-- Append one state change to the global events stream (trimmed near `maxlen`) and to the
-- job's own history under the same entry id, so one cursor means the same point in both; then
-- wake whoever waits on the job's channel ('' = nobody can be waiting yet). Returns the entry id.
--
-- The job's history is its hash's `history` field, one line per change (service/events.py
-- reads it): `<entry id> <from, '-' for the creation> <to> <at_ms minus the id's ms> <reason>`.
-- A job recorded by a version before it has its own stream (`transitions_key`) and no such
-- field: its changes go on being appended there, so that its history stays in one place
-- (`transitions_key` false: a new job, which has none).
local function append_event(events_key, job_key, transitions_key, channel, maxlen, job_id,
                            tenant, endpoint, from, to, at_ms, reason)
  local fields = {'job_id', job_id, 'tenant', tenant, 'endpoint', endpoint, 'from', from,
    'to', to, 'at_ms', at_ms, 'reason', reason}
  local id = redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  local history = redis.call('HGET', job_key, 'history')
  if not history and transitions_key and redis.call('EXISTS', transitions_key) == 1 then
    -- The explicit id can only be refused if the global stream was deleted and re-created
    -- behind the job's own; then the job's stream takes a fresh id rather than abort a step
    -- that has already written (a script's writes are not rolled back on error).
    local copied = redis.pcall('XADD', transitions_key, id, unpack(fields))
    if type(copied) == 'table' and copied.err then
      redis.call('XADD', transitions_key, '*', unpack(fields))
    end
  else
    local id_ms = tonumber(string.match(id, '^(%d+)'))
    -- A reason is one word; a newline in one would split the line.
    local line = id .. ' ' .. (from == '' and '-' or from) .. ' ' .. to .. ' '
      .. string.format('%d', tonumber(at_ms) - id_ms) .. ' ' .. (string.gsub(reason, '\n', ' '))
      .. '\n'
    redis.call('HSET', job_key, 'history', (history or '') .. line)
  end
  if channel ~= '' then
    redis.call('PUBLISH', channel, id)
  end
  return id
end

-- Enqueue an ARQ task the way ARQ does, by its own rule: a task id that is queued or has a
-- result is not enqueued again.
local function enqueue(queue_key, arq_job_key, arq_result_key, task_id, payload, expiry_ms,
                       run_at_ms)
  if redis.call('EXISTS', arq_job_key, arq_result_key) == 0 then
    redis.call('PSETEX', arq_job_key, expiry_ms, payload)
    redis.call('ZADD', queue_key, run_at_ms, task_id)
  end
end

-- Whether a follow-up's condition holds for the job: '' always; `field` when the field is
-- non-empty; `field~word|fallback` when the field's space-separated words include `word`, or,
-- with the field absent, when `fallback` ('' = none) is non-empty.
local function condition_holds(job_key, condition)
  if condition == '' then
    return true
  end
  local field, word, fallback = string.match(condition, '^([^~]+)~([^|]+)|?(.*)$')
  if not field then
    local value = redis.call('HGET', job_key, condition)
    return value ~= false and value ~= ''
  end
  local value = redis.call('HGET', job_key, field)
  if value == false then
    if fallback == '' then
      return false
    end
    local other = redis.call('HGET', job_key, fallback)
    return other ~= false and other ~= ''
  end
  return string.find(' ' .. value .. ' ', ' ' .. word .. ' ', 1, true) ~= nil
end

-- Enqueue `count` follow-up tasks described from ARGV[first_arg] on, six arguments each
-- (task id, payload, expiry ms, run-at ms, the condition for it to be enqueued (see
-- condition_holds), and a member to add to a sorted set with the run-at as score, '' = none),
-- with their ARQ job key, ARQ result key and that sorted set's key from KEYS[first_key] on.
local function enqueue_follow_ups(job_key, queue_key, count, first_arg, first_key)
  for i = 0, count - 1 do
    local a = first_arg + i * 6
    local k = first_key + i * 3
    if condition_holds(job_key, ARGV[a + 4]) then
      enqueue(queue_key, KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
      if ARGV[a + 5] ~= '' then
        redis.call('ZADD', KEYS[k + 2], 'NX', ARGV[a + 3], ARGV[a + 5])
      end
    end
  end
end
