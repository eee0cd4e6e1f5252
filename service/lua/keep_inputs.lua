-- Record a page of keep_inputs' work in one step: each job's input leaves its hash (with the
-- media key it was copied to, unless it was dropped), and the jobs leave the list. A job whose
-- record expired meanwhile is not written back.
-- KEYS: 1 the list of inputs to keep, 2 the failed-copies hash, 3.. each job's hash
-- ARGV: for each job hash in KEYS, its job id and the media key ('' = dropped, no copy)
for i = 3, #KEYS do
  local job_id = ARGV[(i - 3) * 2 + 1]
  local archived = ARGV[(i - 3) * 2 + 2]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HDEL', KEYS[i], 'input')
    if archived ~= '' then
      redis.call('HSET', KEYS[i], 'input_key', archived)
    end
  end
  redis.call('ZREM', KEYS[1], job_id)
  redis.call('HDEL', KEYS[2], job_id)
end
return #KEYS - 2
