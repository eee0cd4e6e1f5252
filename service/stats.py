"""The operations overview's numbers (GET /v1/stats), folded from the job event stream.

Nothing new is written on a job's way: the counters are derived from the one event stream
(service/events.py), the same record of state changes every other reader uses. Each call to
`Stats.read` first folds the events appended since the last call (`stats_fold.lua`, at most
`FOLD_BATCH` entries per round trip and `FOLD_ROUNDS` round trips per call), then reads the
counters with one pipeline whose size is bounded by the number of tenants and by the 60 minutes
of the series. So a call costs the same whatever the number of jobs; a burst of more than
FOLD_BATCH x FOLD_ROUNDS events since the last call is caught up over the next calls
(`complete` is false meanwhile).

What is counted, per tenant:

- active jobs by status (queued, submitting, submitted, in_progress): +1 on entering, -1 on
  leaving, from each event's `from` and `to`;
- queued jobs by the time they were queued, for the queue's depth and the oldest one's age;
- terminal moves (completed, failed, cancelled) per epoch minute, kept two hours, for the last
  hour's totals and the throughput series.

The counters are only as complete as the stream: events trimmed away (EVENT_STREAM_MAXLEN)
before a fold read them are lost to the counters, and the answer says so (`complete: false`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.jobs import ACTIVE_STATUSES, JobStatus, iso_from_ms
from service.keys import RedisKeys
from service.lua_scripts import lua_source

FOLD_BATCH = 2000
FOLD_ROUNDS = 3
SERIES_MINUTES = 60
MINUTE_TTL_S = 2 * 3600
# Active statuses in the order of a job's way, for stable answers.
ACTIVE_ORDER = tuple(status for status in JobStatus if status in ACTIVE_STATUSES)
TERMINAL_ORDER = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
AT_FAL = (JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class FoldResult:
    folded: int
    caught_up: bool
    gap: bool


class Stats:
    """Folds the event stream into counters and answers the overview for one scope."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._fold = redis.register_script(lua_source("stats_fold.lua"))

    async def fold(self) -> FoldResult:
        """Fold up to FOLD_BATCH x FOLD_ROUNDS new events into the counters."""
        folded, more, gap = 0, 1, 0
        for _ in range(FOLD_ROUNDS):
            count, more, gap = await self._fold(
                keys=[
                    self.keys.events,
                    self.keys.stats_cursor,
                    self.keys.stats_tenants,
                    self.keys.stats_queued_all,
                ],
                args=[
                    FOLD_BATCH,
                    self.keys.stats_counts_prefix,
                    self.keys.stats_queued_prefix,
                    self.keys.stats_minute_prefix,
                    self.keys.stats_minute_all_prefix,
                    MINUTE_TTL_S,
                ],
            )
            folded += int(count)
            if not int(more):
                break
        return FoldResult(folded=folded, caught_up=not int(more), gap=bool(int(gap)))

    async def read(self, tenant: str | None, *, budget: int | None = None) -> dict[str, Any]:
        """The overview for `tenant`, or for every tenant when None (operator keys)."""
        fold = await self.fold()
        now_ms = int(time.time() * 1000)
        minutes = [now_ms // 60_000 - back for back in range(SERIES_MINUTES - 1, -1, -1)]
        tenants = [tenant] if tenant is not None else await self._tenants()
        queued_key = (
            self.keys.stats_queued_all if tenant is None else self.keys.stats_queued_prefix + tenant
        )
        minute_prefix = (
            self.keys.stats_minute_all_prefix
            if tenant is None
            else f"{self.keys.stats_minute_prefix}{tenant}:"
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in tenants:
                pipe.hgetall(self.keys.stats_counts_prefix + name)
            pipe.zcard(queued_key)
            pipe.zrange(queued_key, 0, 0, withscores=True)
            for minute in minutes:
                pipe.hgetall(f"{minute_prefix}{minute}")
            pipe.zcount(self.keys.queue, "-inf", now_ms)
            replies = await pipe.execute()
        per_tenant = {name: _active_counts(replies[i]) for i, name in enumerate(tenants)}
        rest = replies[len(tenants) :]
        depth, oldest, buckets, tasks_due = rest[0], rest[1], rest[2:-1], rest[-1]
        counts = {
            status.value: sum(each[status.value] for each in per_tenant.values())
            for status in ACTIVE_ORDER
        }
        series = [_terminal_counts(bucket) for bucket in buckets]
        oldest_age_s = max(0.0, (now_ms - oldest[0][1]) / 1000) if oldest else None
        answer: dict[str, Any] = {
            "object": "stats",
            "scope": {"tenant": tenant, "all_tenants": tenant is None},
            "generated_at": iso_from_ms(now_ms),
            "complete": fold.caught_up and not fold.gap,
            "counts": counts,
            "last_hour": {
                status.value: sum(point[status.value] for point in series)
                for status in TERMINAL_ORDER
            },
            "in_flight": {
                "count": sum(counts[status.value] for status in AT_FAL),
                "budget": budget,
            },
            "queue": {
                "depth": int(depth),
                "oldest_age_s": oldest_age_s,
                # ARQ tasks of every kind due now, all tenants': an operator's number only.
                "tasks_due": int(tasks_due) if tenant is None else None,
            },
            "throughput": {
                "bucket_s": 60,
                "series": [
                    {"at": iso_from_ms(minute * 60_000), **point}
                    for minute, point in zip(minutes, series, strict=True)
                ],
            },
        }
        if tenant is None:
            answer["tenants"] = per_tenant
        return answer

    async def _tenants(self) -> list[str]:
        members = await self.redis.smembers(self.keys.stats_tenants)  # type: ignore[misc]
        return sorted(member.decode() for member in members)


def _active_counts(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    # A fold that started after events were trimmed can see a job leave a state it never saw
    # it enter: never show a negative count.
    return {status.value: max(0, int(raw.get(status.value.encode(), 0))) for status in ACTIVE_ORDER}


def _terminal_counts(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    return {status.value: int(raw.get(status.value.encode(), 0)) for status in TERMINAL_ORDER}


_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_COUNTS: dict[str, Any] = {
    "type": "object",
    "required": [status.value for status in ACTIVE_ORDER],
    "properties": {status.value: _COUNT for status in ACTIVE_ORDER},
}
_TERMINAL: dict[str, Any] = {
    "type": "object",
    "required": [status.value for status in TERMINAL_ORDER],
    "properties": {status.value: _COUNT for status in TERMINAL_ORDER},
}
STATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "object",
        "scope",
        "generated_at",
        "complete",
        "counts",
        "last_hour",
        "in_flight",
        "queue",
        "throughput",
    ],
    "properties": {
        "object": {"const": "stats"},
        "scope": {
            "type": "object",
            "properties": {
                "tenant": {"type": ["string", "null"]},
                "all_tenants": {"type": "boolean"},
            },
        },
        "generated_at": {"type": "string", "format": "date-time"},
        "complete": {
            "type": "boolean",
            "description": "False while a backlog of events is being folded, or after events "
            "were trimmed from the stream before they were counted.",
        },
        "counts": {**_COUNTS, "description": "Jobs in each active state now."},
        "last_hour": {**_TERMINAL, "description": "Jobs that ended in the last 60 minutes."},
        "in_flight": {
            "type": "object",
            "description": "Jobs submitting to or running at fal, and the budget (null: none).",
            "properties": {
                "count": _COUNT,
                "budget": {"type": ["integer", "null"]},
                "leases": {
                    **_COUNT,
                    "description": "In-flight slots held (FAL_MAX_IN_FLIGHT counts these).",
                },
            },
        },
        "spend": {
            "type": "object",
            "description": "Estimated spend today and this month (UTC) against each tenant's "
            "caps: the caller's tenant, or (operator keys) every tenant seen or configured.",
            "properties": {
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "tenant": {"type": "string"},
                            "spend_today_usd": {"type": "number"},
                            "daily_cap_usd": {"type": ["number", "null"]},
                            "spend_month_usd": {"type": "number"},
                            "monthly_cap_usd": {"type": ["number", "null"]},
                            "in_flight": _COUNT,
                            "max_in_flight": {"type": ["integer", "null"]},
                        },
                    },
                }
            },
        },
        "dead_letters_last_hour": {
            **_COUNT,
            "description": "Callback deliveries dead-lettered in the last hour (the scope's "
            "dead-letter lists, GET /v1/callbacks/dead).",
        },
        "dispatch": {
            "type": "object",
            "description": "Whether dispatch is paused (fal refused our key), and why.",
            "properties": {"paused": {"type": ["object", "null"]}},
        },
        "queue": {
            "type": "object",
            "properties": {
                "depth": {**_COUNT, "description": "Queued jobs, not yet sent to fal."},
                "oldest_age_s": {"type": ["number", "null"]},
                "tasks_due": {
                    "type": ["integer", "null"],
                    "description": "Worker tasks of every kind due now (operator keys only).",
                },
            },
        },
        "throughput": {
            "type": "object",
            "properties": {
                "bucket_s": {"const": 60},
                "series": {
                    "type": "array",
                    "description": "The last 60 minutes, oldest first: jobs ended per minute.",
                    "items": {
                        **_TERMINAL,
                        "required": ["at", *_TERMINAL["required"]],
                        "properties": {
                            "at": {"type": "string", "format": "date-time"},
                            **_TERMINAL["properties"],
                        },
                    },
                },
            },
        },
        "tenants": {
            "type": "object",
            "description": "Operator keys only: each tenant's active counts.",
            "additionalProperties": _COUNTS,
        },
    },
}
