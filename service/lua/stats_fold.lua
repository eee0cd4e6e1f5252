-- Fold the next events of the job event stream into the overview's counters (service/stats.py).
-- Reads at most ARGV[1] entries after the stored cursor, so one call's work is bounded; the
-- cursor moves in the same atomic step as the counters, so no event is counted twice.
-- KEYS: 1 events stream, 2 cursor hash, 3 tenants set, 4 every tenant's queued sorted set
-- ARGV: 1 max entries, 2 counts prefix, 3 queued prefix, 4 minute prefix, 5 minute-all prefix,
--       6 minute bucket ttl s
-- The per-tenant and per-minute keys are named from the prefixes (RedisKeys); they cannot be
-- listed in KEYS before the events that name them are read. One Redis node holds them all.
-- Returns {entries folded, 1 if more are waiting, 1 if events were trimmed away unfolded}.
local cursor = redis.call('HGET', KEYS[2], 'cursor') or '0-0'
local entries = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', tonumber(ARGV[1]))

local function newer(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end

-- Events trimmed from the stream before they were folded are lost to the counters. Count what
-- was folded against what the stream says it was ever given (Redis 7's entries-added): once the
-- fold has caught up, any difference was trimmed unread, and the answer must say so.
local gap = tonumber(redis.call('HGET', KEYS[2], 'gap') or '0')
local folded = tonumber(redis.call('HGET', KEYS[2], 'folded') or '-1')
local added = nil
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if ok then
  local length = 0
  local first = nil
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then added = tonumber(info[i + 1]) end
    if info[i] == 'length' then length = tonumber(info[i + 1]) end
    if info[i] == 'first-entry' and info[i + 1] then first = info[i + 1][1] end
  end
  if not added and first and cursor ~= '0-0' and newer(first, cursor) then
    -- Redis 6 keeps no count: the oldest entry left being newer than the last one folded means
    -- the stream was trimmed past the cursor, probably (not surely) over unread entries.
    gap = 1
  end
  if added and (folded < 0 or folded > added) then
    -- The first fold, or the stream was re-created: what is gone now was never counted.
    if added > length and cursor == '0-0' then gap = 1 end
    folded = added - length
  end
end

local terminal = {completed = true, failed = true, cancelled = true}
for _, entry in ipairs(entries) do
  local f = {}
  local raw = entry[2]
  for i = 1, #raw, 2 do
    f[raw[i]] = raw[i + 1]
  end
  local tenant, job_id, from, to = f['tenant'], f['job_id'], f['from'], f['to']
  local counts = ARGV[2] .. tenant
  redis.call('SADD', KEYS[3], tenant)
  if from ~= nil and from ~= '' then
    redis.call('HINCRBY', counts, from, -1)
    if from == 'queued' then
      redis.call('ZREM', ARGV[3] .. tenant, job_id)
      redis.call('ZREM', KEYS[4], job_id)
    end
  end
  if terminal[to] then
    -- Terminal jobs are not counted live (they never leave that state); they are counted per
    -- minute, for the last hour's failures and the throughput series.
    local minute = math.floor(tonumber(f['at_ms']) / 60000)
    local mine = ARGV[4] .. tenant .. ':' .. minute
    local all = ARGV[5] .. minute
    redis.call('HINCRBY', mine, to, 1)
    redis.call('EXPIRE', mine, tonumber(ARGV[6]))
    redis.call('HINCRBY', all, to, 1)
    redis.call('EXPIRE', all, tonumber(ARGV[6]))
  else
    redis.call('HINCRBY', counts, to, 1)
    if to == 'queued' and from ~= 'queued' then
      redis.call('ZADD', ARGV[3] .. tenant, tonumber(f['at_ms']), job_id)
      redis.call('ZADD', KEYS[4], tonumber(f['at_ms']), job_id)
    end
  end
  cursor = entry[1]
end
local more = 0
if #entries == tonumber(ARGV[1]) then
  more = 1
end
if added then
  folded = folded + #entries
  if more == 0 and added > folded then
    gap = 1
    folded = added
  end
  redis.call('HSET', KEYS[2], 'folded', folded)
end
redis.call('HSET', KEYS[2], 'cursor', cursor, 'gap', gap)
return {#entries, more, gap}
