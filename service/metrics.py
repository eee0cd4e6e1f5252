"""Prometheus metrics: the counters call sites bump, and the gauges read from Redis at scrape.

Counters and histograms live in this process (or, with several uvicorn processes, in
prometheus_client's multiprocess files under PROMETHEUS_MULTIPROC_DIR, merged at scrape).
Gauges that describe the whole system (queue depth, oldest queued task, jobs at fal) are read
from Redis when /metrics is scraped, in one pipelined round trip of O(1)/O(log n) commands,
so any API process answers them alike: aggregate them with `max`, not `sum`.

Workers serve their own counters on WORKER_METRICS_PORT (see workers/context.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from service.keys import RedisKeys

__all__ = ["CONTENT_TYPE_LATEST"]

# Seconds; intake is milliseconds, a fal submit tens of milliseconds to seconds.
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SUBMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

JOBS_ACCEPTED = Counter(
    "vidhook_jobs_accepted_total", "Jobs accepted at intake", ["endpoint", "tenant"]
)
JOBS_FINISHED = Counter(
    "vidhook_jobs_finished_total",
    "Jobs that reached a terminal state",
    ["endpoint", "tenant", "status"],
)
SPEND_CAP_REFUSALS = Counter(
    "vidhook_spend_cap_refusals_total",
    "Jobs refused at intake because they would pass a tenant's spend cap",
    ["tenant", "period"],
)
DISPATCH_PAUSES = Counter(
    "vidhook_dispatch_pauses_total",
    "Times dispatch paused for everyone because fal refused our key (401/403)",
)
SPEND = Counter(
    "vidhook_estimated_spend_usd_total",
    "Estimated fal spend of completed jobs, from the price table",
    ["endpoint", "tenant"],
)
INTAKE_SECONDS = Histogram(
    "vidhook_intake_seconds", "POST /v1/jobs handling time", buckets=_FAST_BUCKETS
)
FAL_SUBMIT_SECONDS = Histogram(
    "vidhook_fal_submit_seconds",
    "Time of one submit to fal, by outcome class",
    ["outcome"],
    buckets=_SUBMIT_BUCKETS,
)
FAL_SUBMITS = Counter(
    "vidhook_fal_submits_total",
    "Submits to fal by outcome class: accepted, rejected, unavailable, ambiguous",
    ["outcome"],
)
DUPLICATE_SUBMITS = Counter(
    "vidhook_fal_duplicate_submits_total",
    "Second (or later) submits of one job after an unclear first one: may be paid twice",
)
WEBHOOKS_RECEIVED = Counter(
    "vidhook_fal_webhooks_received_total",
    "Verified fal webhooks, by whether they changed the job",
    ["outcome"],
)
WEBHOOKS_REFUSED = Counter(
    "vidhook_fal_webhooks_refused_total",
    "fal webhooks refused, by reason: token, signature, malformed, unknown_job, too_large",
    ["reason"],
)
CALLBACK_ATTEMPTS = Counter(
    "vidhook_callback_attempts_total",
    "Client callback attempts by outcome: delivered, retrying, abandoned",
    ["outcome"],
)
RECONCILER_ACTIONS = Counter(
    "vidhook_reconciler_actions_total",
    "What the result fetcher / reconciler did: idle, polling, reconciled, fetched, unknown",
    ["action"],
)


def finished(endpoint: str, tenant: str, status: str, estimated_cost_usd: float | None) -> None:
    """Count one job reaching terminal `status`, and its estimated spend if it completed."""
    JOBS_FINISHED.labels(endpoint, tenant, status).inc()
    if status == "completed" and estimated_cost_usd:
        SPEND.labels(endpoint, tenant).inc(estimated_cost_usd)


async def job_submitted(redis: Redis, keys: RedisKeys, job_id: str, at_ms: int) -> None:
    """Count `job_id` as in flight at fal (the in-flight gauge is this set's size).

    The store's transition to `submitted` does this itself (transition.lua); this is for
    callers outside a step."""
    await redis.zadd(keys.at_fal, {job_id: at_ms})


async def job_finished(redis: Redis, keys: RedisKeys, job_id: str, status: str) -> str:
    """Count a job that just reached terminal `status` (once: callers count applied moves).

    Returns the job's tenant, for the caller's log line.
    """
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.at_fal, job_id)
        pipe.hmget(keys.job(job_id), ["endpoint", "tenant", "estimated_cost_usd"])
        _, (endpoint, tenant, cost) = await pipe.execute()
    tenant_name = (tenant or b"").decode()
    finished((endpoint or b"").decode(), tenant_name, status, float(cost) if cost else None)
    return tenant_name


class _Gauges(Collector):
    """Fixed values read from Redis just before a scrape."""

    def __init__(self, values: dict[str, tuple[str, float]]) -> None:
        self._values = values

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, value) in self._values.items():
            yield GaugeMetricFamily(name, documentation, value=value)


async def system_gauges(redis: Redis, keys: RedisKeys) -> dict[str, tuple[str, float]]:
    """Queue depth, age of the oldest due task and jobs at fal, in one round trip."""
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        # ARQ's queue is a sorted set scored by the time a task may run: deferred tasks
        # (reconcile checks, retries' back-off) are not waiting, so count only those due.
        pipe.zcount(keys.queue, "-inf", now_ms)
        pipe.zrange(keys.queue, 0, 0, withscores=True)
        pipe.zcard(keys.queue)
        pipe.zcard(keys.at_fal)
        pipe.zcard(keys.inflight)
        pipe.exists(keys.dispatch_paused)
        due, oldest, total, at_fal, leases, paused = await pipe.execute()
    oldest_age_s = (now_ms - oldest[0][1]) / 1000 if oldest and oldest[0][1] <= now_ms else 0.0
    return {
        "vidhook_queue_due_tasks": ("ARQ tasks due to run now (backlog)", float(due)),
        "vidhook_queue_tasks": ("ARQ tasks queued, deferred ones included", float(total)),
        "vidhook_queue_oldest_age_seconds": (
            "How long the oldest due ARQ task has waited",
            oldest_age_s,
        ),
        "vidhook_jobs_in_flight_at_fal": ("Jobs submitted to fal and not finished", float(at_fal)),
        "vidhook_fal_leases": (
            "In-flight slots held (FAL_MAX_IN_FLIGHT bounds them)",
            float(leases),
        ),
        "vidhook_dispatch_paused": ("1 while fal refuses our key (401/403)", float(paused)),
    }


def render(gauges: dict[str, tuple[str, float]]) -> bytes:
    """The exposition text: this process's (or all processes') series plus `gauges`."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return body + generate_latest(_single(gauges))


def _single(gauges: dict[str, tuple[str, float]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_Gauges(gauges))
    return registry


class Timer:
    """`with Timer() as t: …` then `t.elapsed_s`."""

    def __enter__(self) -> Timer:
        self._started = time.perf_counter()
        self.elapsed_s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._started
