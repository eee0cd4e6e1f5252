"""Spend control: fal's in-flight budget, fair share between tenants, spend caps, the pause.

In flight. `FAL_MAX_IN_FLIGHT` bounds how many of our requests fal holds at once; a tenant's
`max_in_flight` (TENANT_LIMITS) bounds its own. A slot is a *lease* in Redis: a job id in the
sorted set `{prefix}inflight` (and `{prefix}inflight:{tenant}`), scored by when it expires.

- Admission. Intake does not enqueue a job's dispatch task itself: it parks the job at the end
  of its tenant's line (`{prefix}ready:{tenant}`) and, in the same create step, admits whoever
  may go now. Admitting takes a lease and enqueues the dispatch task, atomically. A job waiting
  for a slot stays `queued` and costs nothing: no task polls for a slot.
- Fair share. Tenants with parked jobs form a ring (`{prefix}ready`); each free slot goes to
  the tenant at the ring's head, which keeps its turn for `weight` admissions (deficit round
  robin with unit cost), then the next tenant's turn comes. A tenant's flood therefore delays
  another tenant's single job by at most `weight` free slots (one, with equal weights).
- Release. Every terminal step (webhook, reconcile, cancel, failure: `JobStore.transition`
  with `finished`) gives the lease back and admits the next parked job in the same atomic
  Lua step (`budget.lua` `job_ended`), so the wake-up is a follow-up of the release, not a poll.
- Expiry and dead holders. A lease is held by the *job*, not by a worker process: a worker
  killed mid-submit leaves the job `submitting` with its submit unclear, fal may hold the
  request, and the lease must stay. It does: the job's retried task settles the unclear
  submit (workers/settle.py) and the job's end releases the lease. A lease expires only at
  the job's deadline (JOB_DEADLINE_S after creation) plus a margin, when the deadline sweep
  has ended the job anyway: the expiry is the backstop for a job record that was lost, and
  never frees a slot while the job could still be at fal within its deadline.

Pause. fal answering 401/403 to a submit means our key is bad or the account is locked: every
job would fail the same way. Dispatch pauses for everyone (`{prefix}dispatch:paused`, with
the reason `/readyz` shows); jobs go back to `queued` in their line. A probe task asks fal
for the status of a request id that cannot exist: a good key gets 404, a bad one 401/403.
Nothing billable is sent. On 404 dispatch resumes and parked jobs are admitted again.

Slow down. A 429 shrinks the global budget to one below what is in flight, until its
Retry-After has passed; a wake task then admits what the shrink held back.

Spend caps. Each job's `estimated_cost_usd` counts against its tenant's day and month (UTC),
in micro-dollars, checked and counted inside the create step, so concurrent requests cannot
overshoot a cap. A job that never reached fal (cancelled while queued, refused by fal at
submit, given up on before fal took it) is refunded in its terminal step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from redis.asyncio import Redis

from service.keys import RedisKeys

DISPATCH_FUNCTION = "dispatch_job"
# Lease expiry past the job's deadline: the sweep runs every minute and may take a while.
LEASE_MARGIN_S = 600
# Most jobs one step admits; a resume after a pause admits the rest in further calls.
ADMIT_BATCH = 500
MICRO = 1_000_000
DAY_TTL_S = 3 * 86_400
MONTH_TTL_S = 62 * 86_400
PROBE_TASK_NAME = "probe-fal"
WAKE_TASK_NAME = "wake-dispatch"
# When a 429 carries no Retry-After.
DEFAULT_SLOW_DOWN_S = 5.0


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """One tenant's entry of TENANT_LIMITS; None = no limit."""

    max_in_flight: int | None = None
    weight: int = 1
    daily_usd: float | None = None
    monthly_usd: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_in_flight": self.max_in_flight,
            "weight": self.weight,
            "daily_usd": self.daily_usd,
            "monthly_usd": self.monthly_usd,
        }


_LIMIT_FIELDS = {"max_in_flight", "weight", "daily_usd", "monthly_usd"}


def parse_tenant_limits(text: str | None) -> dict[str, TenantLimits]:
    """TENANT_LIMITS: `{"acme": {"max_in_flight": 5, "weight": 2, "daily_usd": 50, …}}`.

    Raises ValueError naming the bad entry.
    """
    if not text or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"TENANT_LIMITS is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError("TENANT_LIMITS must be a JSON object of tenant -> limits")
    limits: dict[str, TenantLimits] = {}
    for tenant, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) - _LIMIT_FIELDS:
            raise ValueError(
                f"TENANT_LIMITS[{tenant!r}]: an object with only {sorted(_LIMIT_FIELDS)}"
            )
        m, w = entry.get("max_in_flight"), entry.get("weight", 1)
        daily, monthly = entry.get("daily_usd"), entry.get("monthly_usd")
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
            raise ValueError(f"TENANT_LIMITS[{tenant!r}].max_in_flight: a positive integer")
        if not isinstance(w, int) or isinstance(w, bool) or w < 1:
            raise ValueError(f"TENANT_LIMITS[{tenant!r}].weight: a positive integer")
        for name, value in (("daily_usd", daily), ("monthly_usd", monthly)):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or value < 0
            ):
                raise ValueError(f"TENANT_LIMITS[{tenant!r}].{name}: a number of USD >= 0")
        limits[str(tenant)] = TenantLimits(
            m, w, float(daily) if daily is not None else None,
            float(monthly) if monthly is not None else None,
        )  # fmt: skip
    return limits


def to_micro(usd: float) -> int:
    return round(usd * MICRO)


def day_and_month(at_ms: int) -> tuple[str, str]:
    """The UTC day (YYYY-MM-DD) and month (YYYY-MM) of `at_ms`."""
    when = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")


def resets_at(period: str, at_ms: int) -> str:
    """When the `period` ('daily' or 'monthly') holding `at_ms` ends, ISO 8601 UTC."""
    when = datetime.fromtimestamp(at_ms / 1000, tz=UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    if period == "daily":
        end = when + timedelta(days=1)
    else:
        first = when.replace(day=1)
        end = (first + timedelta(days=32)).replace(day=1)
    return end.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """What the budget steps (service/lua/budget.lua) are told, the same in every process."""

    max_in_flight: int | None = None
    tenants: dict[str, TenantLimits] = field(default_factory=dict)
    job_deadline_s: int = 6 * 3600

    def limits(self, tenant: str) -> TenantLimits:
        return self.tenants.get(tenant, TenantLimits())

    def lua_config(self, keys: RedisKeys) -> str:
        """The `cfg` argument of the budget steps, as one JSON string (built once)."""
        return json.dumps(
            {
                "p": keys.prefix,
                "q": keys.queue,
                "aj": job_key_prefix,
                "ar": result_key_prefix,
                "fn": DISPATCH_FUNCTION,
                "exp": expires_extra_ms,
                "max": self.max_in_flight or 0,
                "dl": self.job_deadline_s * 1000,
                "lm": LEASE_MARGIN_S * 1000,
                "batch": ADMIT_BATCH,
                "lim": {
                    tenant: {"m": rule.max_in_flight or 0, "w": rule.weight}
                    for tenant, rule in self.tenants.items()
                    if rule.max_in_flight or rule.weight != 1
                },
            },
            separators=(",", ":"),
        )

    def spend_argument(
        self, keys: RedisKeys, tenant: str, cost_usd: float | None, at_ms: int
    ) -> tuple[str, dict[str, str | int]]:
        """The create step's spend argument and the job fields that let it be refunded.

        ('', {}) for a job without an estimate (a pass-through endpoint): it is not counted.
        """
        if not cost_usd:
            return "", {}
        micro = to_micro(cost_usd)
        day, month = day_and_month(at_ms)
        rule = self.limits(tenant)
        spend_keys = [keys.spend(tenant, day), keys.spend(tenant, month)]
        argument = json.dumps(
            {
                "c": micro,
                "keys": spend_keys,
                "caps": [
                    to_micro(rule.daily_usd) if rule.daily_usd is not None else -1,
                    to_micro(rule.monthly_usd) if rule.monthly_usd is not None else -1,
                ],
                "ttl": [DAY_TTL_S, MONTH_TTL_S],
            },
            separators=(",", ":"),
        )
        return argument, {"spend_micro_usd": micro, "spend_keys": " ".join(spend_keys)}


class OverSpendCap(Exception):
    """The create step refused a job: it would take its tenant past a spend cap."""

    def __init__(self, period: str, spent_micro: int, cap_micro: int) -> None:
        super().__init__(f"{period} spend cap")
        self.period = period
        self.spent_usd = spent_micro / MICRO
        self.cap_usd = cap_micro / MICRO


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str
    status_code: int | None
    since_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "status_code": self.status_code, "since_ms": self.since_ms}


class Budgets:
    """Reads and the few writes of spend control that are not part of a job's step."""

    def __init__(self, redis: Redis, keys: RedisKeys, config: BudgetConfig) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.cfg = config.lua_config(keys)
        self._admit = redis.register_script(_budget_script("admit.lua"))

    async def admit(self, at_ms: int) -> int:
        """Admit parked jobs while slots are free; returns how many (all, batch by batch)."""
        total = 0
        while True:
            admitted = int(await self._admit(keys=[], args=[self.cfg, at_ms]))
            total += admitted
            if admitted < ADMIT_BATCH:
                return total

    async def pause(self, reason: str, status_code: int | None, at_ms: int) -> bool:
        """Pause dispatch for everyone; True if it was not paused already."""
        value = json.dumps(Pause(reason, status_code, at_ms).as_dict())
        return bool(await self.redis.set(self.keys.dispatch_paused, value, nx=True))

    async def paused(self) -> Pause | None:
        raw = await self.redis.get(self.keys.dispatch_paused)
        return pause_from(raw)

    async def resume(self, at_ms: int) -> int:
        """End a pause and admit what waited; returns how many jobs were admitted."""
        await self.redis.delete(self.keys.dispatch_paused)
        return await self.admit(at_ms)

    async def slow_down(self, retry_after_s: float) -> int:
        """fal said 429: hold the budget one below what is in flight for `retry_after_s`."""
        in_flight = int(await self.redis.zcard(self.keys.inflight))
        limit = max(1, in_flight - 1)
        if self.config.max_in_flight:
            limit = min(limit, self.config.max_in_flight)
        await self.redis.set(self.keys.budget_shrunk, limit, px=max(1, int(retry_after_s * 1000)))
        return limit

    async def in_flight(self, tenant: str | None = None) -> int:
        key = self.keys.inflight if tenant is None else self.keys.inflight_of(tenant)
        return int(await self.redis.zcard(key))

    async def usage(self, tenant: str, at_ms: int) -> dict[str, Any]:
        """What GET /v1/usage shows a tenant: spend today and this month (UTC), its limits."""
        day, month = day_and_month(at_ms)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.spend(tenant, day))
            pipe.get(self.keys.spend(tenant, month))
            pipe.zcard(self.keys.inflight_of(tenant))
            pipe.llen(self.keys.ready_of(tenant))
            pipe.zcard(self.keys.inflight)
            spent_day, spent_month, mine, waiting, everyone = await pipe.execute()
        rule = self.config.limits(tenant)
        today = int(spent_day or 0) / MICRO
        this_month = int(spent_month or 0) / MICRO
        return {
            "object": "usage",
            "tenant": tenant,
            "today": {"date": day, "spend_usd": round(today, 6), "cap_usd": rule.daily_usd},
            "month": {"month": month, "spend_usd": round(this_month, 6),
                      "cap_usd": rule.monthly_usd},
            "in_flight": {"count": int(mine), "max": rule.max_in_flight,
                          "waiting": int(waiting)},
            "fal_in_flight": {"count": int(everyone), "budget": self.config.max_in_flight},
            "limits": rule.as_dict(),
            # The flat form the dashboard's spend card reads.
            "spend_today_usd": round(today, 6),
            "daily_cap_usd": rule.daily_usd,
        }  # fmt: skip


_USD_OR_NULL = {"type": ["number", "null"]}
USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The tenant's estimated spend (sum of its jobs' estimated_cost_usd, jobs "
    "that never reached fal refunded) today and this month, UTC, against its TENANT_LIMITS.",
    "required": ["object", "tenant", "today", "month", "in_flight", "limits"],
    "properties": {
        "object": {"const": "usage"},
        "tenant": {"type": "string"},
        "today": {
            "type": "object",
            "properties": {
                "date": {"type": "string", "examples": ["2026-12-02"]},
                "spend_usd": {"type": "number"},
                "cap_usd": {**_USD_OR_NULL, "description": "daily_usd; null: no cap"},
            },
        },
        "month": {
            "type": "object",
            "properties": {
                "month": {"type": "string", "examples": ["2026-12"]},
                "spend_usd": {"type": "number"},
                "cap_usd": {**_USD_OR_NULL, "description": "monthly_usd; null: no cap"},
            },
        },
        "in_flight": {
            "type": "object",
            "description": "The tenant's jobs holding an in-flight slot, its max_in_flight, "
            "and how many of its jobs wait in line for one.",
            "properties": {
                "count": {"type": "integer"},
                "max": {"type": ["integer", "null"]},
                "waiting": {"type": "integer"},
            },
        },
        "fal_in_flight": {
            "type": "object",
            "description": "Every tenant's slots in use, against FAL_MAX_IN_FLIGHT.",
            "properties": {
                "count": {"type": "integer"},
                "budget": {"type": ["integer", "null"]},
            },
        },
        "limits": {
            "type": "object",
            "properties": {
                "max_in_flight": {"type": ["integer", "null"]},
                "weight": {"type": "integer"},
                "daily_usd": _USD_OR_NULL,
                "monthly_usd": _USD_OR_NULL,
            },
        },
        "spend_today_usd": {"type": "number"},
        "daily_cap_usd": _USD_OR_NULL,
    },
}


def pause_from(raw: bytes | str | None) -> Pause | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Pause(str(data["reason"]), data.get("status_code"), int(data["since_ms"]))
    except (ValueError, KeyError, TypeError):
        return Pause(str(raw), None, 0)


def _budget_script(name: str) -> str:
    from service.store import budget_script

    return budget_script(name)
