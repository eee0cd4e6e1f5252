-- Record a callback delivery the first time one of its attempts runs; keep an existing one as
-- it is (its body is the one every retry sends). Returns the delivery's hash.
-- KEYS: 1 delivery hash
-- ARGV: 1 seconds to keep it, 2.. field/value pairs
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
