-- Record a new job, its first event and its dispatch task in one atomic round trip.
-- KEYS: 1 job hash, 2 tenant index, 3 ARQ job key, 4 ARQ result key, 5 ARQ queue,
--       6 idempotency key ('' when the client sent none), 7 events stream,
--       8 the index of every job (all tenants), 9 active jobs by deadline
-- ARGV: 1 job id, 2 created_at_ms, 3 ARQ job payload, 4 ARQ job expiry ms,
--       5 idempotency ttl s, 6 request fingerprint,
--       7 the job hash's small field/value pairs as one JSON array of strings (one argument
--         instead of dozens: packing each argument is most of the client's cost),
--       8 tenant, 9 endpoint, 10 events stream MAXLEN (approximate), 11 reason,
--       12 index cutoff ms: entries of both indexes created before it are dropped,
--       13 the job's deadline ms, 14 seconds the job hash may live at most,
--       15 the budget's cfg (budget.lua; '' = no gate: enqueue the dispatch task at once),
--       16 the spend to count, JSON {c = micro-USD, keys = {day key, month key},
--          caps = {daily, monthly} micro-USD (-1 = none), ttl = {s, s}} ('' = none)
--       17.. field/value pairs with large values (an input of data URIs), passed as they are
-- Returns {1, id} created; {0, id} same idempotency key and same request (replay);
--         {2, id} same idempotency key, different request;
--         {3, period, spent micro-USD, cap micro-USD} over the tenant's spend cap: nothing written.
if KEYS[6] ~= '' then
  local existing = redis.call('GET', KEYS[6])
  if existing then
    local sep = string.find(existing, ' ', 1, true)
    local existing_id = string.sub(existing, 1, sep - 1)
    if string.sub(existing, sep + 1) == ARGV[6] then
      return {0, existing_id}
    end
    return {2, existing_id}
  end
end
-- The cap is checked and the spend counted in this one step, so concurrent requests cannot
-- overshoot: the second of two that would cross the cap sees the first one's spend.
if ARGV[16] ~= '' then
  local spend = cjson.decode(ARGV[16])
  local periods = {'daily', 'monthly'}
  for i = 1, 2 do
    local cap = tonumber(spend.caps[i])
    if cap >= 0 then
      local spent = tonumber(redis.call('GET', spend.keys[i]) or '0')
      if spent + tonumber(spend.c) > cap then
        return {3, periods[i], spent, cap}
      end
    end
  end
  for i = 1, 2 do
    redis.call('INCRBY', spend.keys[i], spend.c)
    redis.call('EXPIRE', spend.keys[i], spend.ttl[i])
  end
end
if KEYS[6] ~= '' then
  redis.call('SET', KEYS[6], ARGV[1] .. ' ' .. ARGV[6], 'EX', ARGV[5])
end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[7])))
if #ARGV >= 18 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 17))
end
-- A cap on the hash's life even if no step ever ended the job; ending it shortens it.
redis.call('EXPIRE', KEYS[1], ARGV[14])
redis.call('ZADD', KEYS[9], ARGV[13], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[8], ARGV[2], ARGV[1])
-- Both indexes would otherwise grow for ever; their jobs' hashes expire after retention.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[12])
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. ARGV[12])
-- From '' to queued, so a reader of the stream sees every job from its start; the first line of
-- the job's history. No PUBLISH: nobody can be waiting on a job whose id has not been answered
-- yet.
append_event(KEYS[7], KEYS[1], false, '', ARGV[10], ARGV[1], ARGV[8], ARGV[9], '', 'queued',
  ARGV[2], ARGV[11])
if ARGV[15] == '' then
  enqueue(KEYS[5], KEYS[3], KEYS[4], ARGV[1], ARGV[3], ARGV[4], ARGV[2])
else
  -- Through the budget: the job waits in its tenant's line, and whoever may go now goes.
  local cfg = cjson.decode(ARGV[15])
  park(cfg, ARGV[8], ARGV[1], false)
  admit_next(cfg, tonumber(ARGV[2]))
end
return {1, ARGV[1]}
