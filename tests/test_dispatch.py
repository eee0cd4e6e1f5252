"""dispatch_job under repetition and crashes: never two paid submits for one job by accident.

These call the real task function against the real Redis and simulator, on jobs enqueued to a
queue the running worker does not read, so each test decides exactly when dispatch runs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from arq import Retry
from redis.asyncio import Redis

from service.jobs import JobStatus
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, Task, now_ms
from tests.conftest import i2v_body
from tests.support.falproxy import FalProxy
from workers.context import on_shutdown, on_startup
from workers.dispatch import dispatch_job

Scenario = Callable[[dict[str, Any], JobStore, str], Awaitable[None]]


def run(settings: Settings, scenario: Scenario, marker: str) -> None:
    async def main() -> None:
        redis = Redis.from_url(settings.redis_url)
        ctx: dict[str, Any] = {"settings": settings, "redis": redis, "job_try": 1}
        await on_startup(ctx)
        store = JobStore(
            redis, RedisKeys(settings.redis_key_prefix, "test:unread-queue"), job_retention_s=60
        )
        job_id = f"job_{uuid.uuid4().hex}"
        body = i2v_body(marker)
        fields = {
            "id": job_id,
            "tenant": "tenant-a",
            "endpoint": body["endpoint"],
            "status": "queued",
            "created_at_ms": now_ms(),
            "input": json.dumps(body["input"]),
            "submit_attempts": 0,
        }
        await store.create(job_id, "tenant-a", fields, Task(job_id, "dispatch_job", (job_id,)))
        try:
            await scenario(ctx, store, job_id)
        finally:
            await on_shutdown(ctx)
            await redis.aclose()

    asyncio.run(main())


def case() -> str:
    return f"dispatch-{uuid.uuid4().hex[:10]}"


def test_running_dispatch_twice_submits_once(settings: Settings, fal_proxy: FalProxy) -> None:
    marker = case()

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        assert (await dispatch_job(ctx, job_id)).startswith("submitted as ")
        assert await dispatch_job(ctx, job_id) == "skipped: submitted"

    run(settings, scenario, marker)
    assert len(fal_proxy.submits_containing(marker)) == 1


def test_two_dispatches_racing_submit_once(settings: Settings, fal_proxy: FalProxy) -> None:
    marker = case()

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        outcomes = await asyncio.gather(
            dispatch_job(dict(ctx), job_id), dispatch_job(dict(ctx), job_id), return_exceptions=True
        )
        submitted = [o for o in outcomes if isinstance(o, str) and o.startswith("submitted")]
        assert len(submitted) == 1, outcomes
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.SUBMITTED

    run(settings, scenario, marker)
    assert len(fal_proxy.submits_containing(marker)) == 1


def test_after_a_crash_mid_submit_dispatch_waits_for_the_webhook_then_resubmits(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    marker = case()

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        # A worker marked the job `submitting` and died: did its POST reach fal? Unknown.
        await store.transition(
            job_id,
            JobStatus.SUBMITTING,
            reason="submit",
            fields={"submit_pending_since_ms": now_ms(), "submit_attempts": 1},
        )
        with pytest.raises(Retry):
            await dispatch_job(ctx, job_id)
        assert fal_proxy.submits_containing(marker) == [], "no resend inside the grace period"

        # The grace period passes with no webhook: fal never had it, so submitting is safe.
        stale_ms = now_ms() - int(settings.ambiguous_submit_grace_s * 1000) - 1000
        await store.update_fields(job_id, {"submit_pending_since_ms": stale_ms})
        assert (await dispatch_job(ctx, job_id)).startswith("submitted as ")
        job = await store.get(job_id)
        assert job is not None and (job.submit_attempts, job.resubmits) == (2, 1)
        assert job.to_resource()["submissions"] == {"attempts": 2, "resubmits": 1}
        assert [event["event"] for event in await store.events(job_id)] == ["resubmit"]

    run(settings, scenario, marker)
    assert len(fal_proxy.submits_containing(marker)) == 1


def test_a_job_finished_by_its_webhook_during_the_grace_period_is_not_resubmitted(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    marker = case()

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        await store.transition(
            job_id, JobStatus.COMPLETED, reason="webhook", fields={"submit_pending_since_ms": 1}
        )
        assert await dispatch_job(ctx, job_id) == "skipped: completed"

    run(settings, scenario, marker)
    assert fal_proxy.submits_containing(marker) == []
