-- Record a new job and enqueue its dispatch task in one atomic round trip.
-- KEYS: 1 job hash, 2 tenant index, 3 ARQ job key, 4 ARQ result key, 5 ARQ queue,
--       6 idempotency key ('' when the client sent none)
-- ARGV: 1 job id, 2 created_at_ms, 3 ARQ job payload, 4 ARQ job expiry ms,
--       5 idempotency ttl s, 6 request fingerprint,
--       7 the job hash's small field/value pairs as one JSON array of strings (one argument
--         instead of dozens: packing each argument is most of the client's cost),
--       8.. field/value pairs with large values (an input of data URIs), passed as they are
-- Returns {1, id} created; {0, id} same idempotency key and same request (replay);
--         {2, id} same idempotency key, different request.
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
  redis.call('SET', KEYS[6], ARGV[1] .. ' ' .. ARGV[6], 'EX', ARGV[5])
end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[7])))
if #ARGV >= 9 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 8))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
-- ARQ's own rule: a task id that is queued or has a result is not enqueued again.
if redis.call('EXISTS', KEYS[3], KEYS[4]) == 0 then
  redis.call('PSETEX', KEYS[3], ARGV[4], ARGV[3])
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
end
return {1, ARGV[1]}
