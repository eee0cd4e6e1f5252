-- The fal in-flight budget, shared by the steps that admit, park and end jobs (service/budgets.py
-- explains the design). Functions only, put in front of each script that uses them, after
-- step.lua (they call its `enqueue`).
--
-- cfg (JSON, built once per process by budgets.BudgetConfig.lua_config):
--   p prefix, q ARQ queue key, aj/ar ARQ job/result key prefixes, fn dispatch function name,
--   exp ARQ job key expiry ms, max global in-flight budget (0 = unlimited), dl job deadline
--   ms (for a lease whose job has no deadline entry), lm lease margin ms past the deadline,
--   batch most jobs one step admits, lim {tenant: {m = max in flight (0 = unlimited), w = weight}}
-- Keys (all under cfg.p): inflight, inflight:<tenant> (sorted sets: job id -> lease expiry ms),
--   ready:<tenant> (list of parked job ids), ready (ring of tenants with parked jobs, each once,
--   membership in ready:tenants), ready:credit (hash: turns left in a tenant's round),
--   dispatch:paused (reason; dispatch waits while it exists), budget:shrunk (a lower global
--   budget while fal asks us to slow down; expires by itself), active (deadlines).

-- Leases past their expiry are dropped before counting: their holder's job was lost.
local function lease_count(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end

local function global_limit(cfg)
  local limit = tonumber(cfg.max) or 0
  local shrunk = tonumber(redis.call('GET', cfg.p .. 'budget:shrunk') or '')
  if shrunk and (limit == 0 or shrunk < limit) then
    limit = math.max(shrunk, 1)
  end
  return limit
end

local function tenant_rule(cfg, tenant)
  local rule = cfg.lim and cfg.lim[tenant]
  if not rule then
    return 0, 1
  end
  return tonumber(rule.m) or 0, math.max(tonumber(rule.w) or 1, 1)
end

-- Whether one more job of `tenant` may be in flight now (global and tenant budgets).
local function slot_free(cfg, tenant, now)
  local limit = global_limit(cfg)
  if limit > 0 and lease_count(cfg.p .. 'inflight', now) >= limit then
    return false
  end
  local m = tenant_rule(cfg, tenant)
  return m == 0 or lease_count(cfg.p .. 'inflight:' .. tenant, now) < m
end

local function lease_expiry(cfg, job_id, now)
  local deadline = tonumber(redis.call('ZSCORE', cfg.p .. 'active', job_id) or '')
  return (deadline or (now + tonumber(cfg.dl))) + tonumber(cfg.lm)
end

local function acquire(cfg, tenant, job_id, now)
  local expiry = lease_expiry(cfg, job_id, now)
  redis.call('ZADD', cfg.p .. 'inflight', expiry, job_id)
  redis.call('ZADD', cfg.p .. 'inflight:' .. tenant, expiry, job_id)
end

local function holds_lease(cfg, job_id)
  return redis.call('ZSCORE', cfg.p .. 'inflight', job_id) ~= false
end

-- Returns 1 if the job held a lease.
local function release(cfg, tenant, job_id)
  redis.call('ZREM', cfg.p .. 'inflight:' .. tenant, job_id)
  return redis.call('ZREM', cfg.p .. 'inflight', job_id)
end

-- Park a queued job until a slot is its tenant's; `front` for one that was next already.
local function park(cfg, tenant, job_id, front)
  local list = cfg.p .. 'ready:' .. tenant
  redis.call('LREM', list, 0, job_id)
  redis.call(front and 'LPUSH' or 'RPUSH', list, job_id)
  redis.call('HSET', cfg.p .. 'job:' .. job_id, 'parked', '1')
  if redis.call('SADD', cfg.p .. 'ready:tenants', tenant) == 1 then
    redis.call('RPUSH', cfg.p .. 'ready', tenant)
  end
end

local function unpark(cfg, tenant, job_id)
  redis.call('LREM', cfg.p .. 'ready:' .. tenant, 0, job_id)
end

-- A dispatch task for an admitted job. The first admission's task id is the job id (as the
-- design card says); a job parked again later (fal paused us) gets a fresh id per admission,
-- since ARQ keeps the earlier task's result under the old one.
local function enqueue_dispatch(cfg, job_id, now)
  local n = redis.call('HINCRBY', cfg.p .. 'job:' .. job_id, 'admissions', 1)
  redis.call('HDEL', cfg.p .. 'job:' .. job_id, 'parked')
  local task_id = job_id
  if n > 1 then
    task_id = job_id .. ':' .. n
  end
  local payload = '{"t":null,"f":"' .. cfg.fn .. '","a":["' .. job_id .. '"],"k":{},"et":' ..
    now .. '}'
  enqueue(cfg.q, cfg.aj .. task_id, cfg.ar .. task_id, task_id, payload, cfg.exp, now)
end

local function leave_ring(cfg, tenant)
  redis.call('LREM', cfg.p .. 'ready', 0, tenant)
  redis.call('SREM', cfg.p .. 'ready:tenants', tenant)
  redis.call('HDEL', cfg.p .. 'ready:credit', tenant)
end

local function next_turn(cfg)
  local ring = cfg.p .. 'ready'
  local tenant = redis.call('LPOP', ring)
  if tenant then
    redis.call('RPUSH', ring, tenant)
    redis.call('HDEL', cfg.p .. 'ready:credit', tenant)
  end
end

-- Admit parked jobs while slots are free: deficit round robin over the tenants with parked
-- jobs, each getting `weight` admissions per round (a tenant at its own max_in_flight passes
-- its turn). Returns the number admitted; at most cfg.batch per call.
local function admit_next(cfg, now)
  if redis.call('EXISTS', cfg.p .. 'dispatch:paused') == 1 then
    return 0
  end
  local ring = cfg.p .. 'ready'
  local limit = global_limit(cfg)
  local admitted, passed = 0, 0
  while admitted < tonumber(cfg.batch) do
    if limit > 0 and lease_count(cfg.p .. 'inflight', now) >= limit then
      break
    end
    local tenant = redis.call('LINDEX', ring, 0)
    if not tenant then
      break
    end
    local list = cfg.p .. 'ready:' .. tenant
    local m, w = tenant_rule(cfg, tenant)
    if redis.call('LLEN', list) == 0 then
      leave_ring(cfg, tenant)
    elseif m > 0 and lease_count(cfg.p .. 'inflight:' .. tenant, now) >= m then
      passed = passed + 1
      if passed >= redis.call('LLEN', ring) then
        break
      end
      next_turn(cfg)
    else
      local job_id = redis.call('LPOP', list)
      local status = redis.call('HGET', cfg.p .. 'job:' .. job_id, 'status')
      -- A parked job that has ended meanwhile (cancelled) is simply dropped.
      if status == 'queued' then
        acquire(cfg, tenant, job_id, now)
        enqueue_dispatch(cfg, job_id, now)
        admitted = admitted + 1
        passed = 0
        local credit = (tonumber(redis.call('HGET', cfg.p .. 'ready:credit', tenant) or '') or w) - 1
        if redis.call('LLEN', list) == 0 then
          leave_ring(cfg, tenant)
        elseif credit <= 0 then
          next_turn(cfg)
        else
          redis.call('HSET', cfg.p .. 'ready:credit', tenant, credit)
        end
      end
    end
  end
  return admitted
end

-- A job reached a terminal state: give back its lease and its place in line, refund its
-- estimated spend if it never reached fal, and hand the slot on.
local function job_ended(cfg, tenant, job_id, now, refund)
  release(cfg, tenant, job_id)
  unpark(cfg, tenant, job_id)
  if refund then
    local job_key = cfg.p .. 'job:' .. job_id
    local spent = redis.call('HMGET', job_key, 'spend_micro_usd', 'spend_keys')
    local micro = tonumber(spent[1] or '')
    if micro and micro > 0 and spent[2] then
      for key in string.gmatch(spent[2], '%S+') do
        redis.call('DECRBY', key, micro)
      end
      redis.call('HSET', job_key, 'spend_micro_usd', 0)
    end
  end
  -- Only the refund at its end reads them.
  redis.call('HDEL', cfg.p .. 'job:' .. job_id, 'spend_keys', 'spend_micro_usd')
  return admit_next(cfg, now)
end
