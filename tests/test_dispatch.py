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

from service.jobs import JobStatus, input_sha256, settle_task_id
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, Task, now_ms
from tests.conftest import i2v_body
from tests.support.falproxy import FalProxy, Fault
from tests.support.servers import ServerThread
from workers.context import on_shutdown, on_startup
from workers.deadlines import sweep_jobs
from workers.dispatch import dispatch_job
from workers.main import within_budget
from workers.results import fetch_result
from workers.settle import settle_submit

Scenario = Callable[[dict[str, Any], JobStore, str], Awaitable[None]]


ENDPOINT = "fal-ai/veo3.1/fast/image-to-video"
UNREAD_QUEUE = "test:unread-queue"


def run(settings: Settings, scenario: Scenario, marker: str, *, job_try: int = 1) -> None:
    # The tasks a step enqueues go to a queue no worker reads: the test runs each one itself.
    settings = settings.model_copy(update={"arq_queue_name": UNREAD_QUEUE})

    async def main() -> None:
        redis = Redis.from_url(settings.redis_url)
        ctx: dict[str, Any] = {"settings": settings, "redis": redis, "job_try": job_try}
        await on_startup(ctx)
        store = JobStore(
            redis, RedisKeys(settings.redis_key_prefix, UNREAD_QUEUE), job_retention_s=60
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
            "input_sha256": input_sha256(body["input"]),
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


def test_after_a_crash_mid_submit_dispatch_settles_it_then_resubmits_after_the_grace(
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
        assert await dispatch_job(ctx, job_id) == "unclear earlier submit: settling"
        # fal lists no such request, but the grace has not passed: no resend yet.
        with pytest.raises(Retry):
            await settle_submit(ctx, job_id)
        assert fal_proxy.submits_containing(marker) == [], "no resend inside the grace period"

        # The grace period passes with no webhook: fal never had it, so submitting is safe.
        stale_ms = now_ms() - int(settings.submit_grace_s(ENDPOINT) * 1000) - 1000
        await store.update_fields(job_id, {"submit_pending_since_ms": stale_ms})
        assert (await settle_submit(ctx, job_id)).startswith("submitted as ")
        job = await store.get(job_id)
        assert job is not None and (job.submit_attempts, job.resubmits) == (2, 1)
        assert job.to_resource()["submissions"] == {"attempts": 2, "resubmits": 1}
        notes = await store.events(job_id)
        assert [note["event"] for note in notes] == ["resubmit"]
        assert notes[0]["cause"] == "a worker was lost while its submit was in flight"

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


def long_grace(settings: Settings) -> Settings:
    # The simulator renders a real video: on a busy machine that can take longer than the
    # suite's 10 s grace, and the listing shows a request only once it has finished.
    return settings.model_copy(update={"ambiguous_submit_grace_s": 45.0})


async def settle_until_done(ctx: dict[str, Any], job_id: str, timeout_s: float = 60.0) -> str:
    """Run settle_submit as ARQ would, sleeping through its Retry defers, until it returns."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await settle_submit(ctx, job_id)
        except Retry as retry:
            assert asyncio.get_running_loop().time() < deadline, "settle_submit never ended"
            await asyncio.sleep(min((retry.defer_score or 0) / 1000, 0.5))


def test_a_late_submit_answer_with_no_webhook_is_found_in_fals_listing_not_resubmitted(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    # fal created the request, but its answer came after our 1 s timeout and its webhook is
    # lost: the request must be found in fal's listing, never paid for twice.
    marker = case()
    fal_proxy.script(marker, Fault("late", delay_s=1.5, mute=True))

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        assert await dispatch_job(ctx, job_id) == "unclear submit: settling"
        outcome = await settle_until_done(ctx, job_id)
        assert outcome.startswith("adopted "), outcome
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.SUBMITTED
        assert job.fal_request_id == outcome.removeprefix("adopted ")
        assert job.fal_status_url == (
            f"{settings.fal_queue_base_url}fal-ai/veo3.1/requests/{job.fal_request_id}/status"
        )
        assert (job.submit_attempts, job.resubmits, job.submit_pending_since_ms) == (1, 0, None)
        assert [note["event"] for note in await store.events(job_id)] == ["adopted"]

    run(long_grace(settings), scenario, marker)
    assert len(fal_proxy.submits_containing(marker)) == 1


def test_a_504_after_fal_created_the_request_is_found_in_fals_listing_not_resubmitted(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    marker = case()
    fal_proxy.script(marker, Fault("created", 504, {"detail": "upstream timed out"}, mute=True))

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        assert await dispatch_job(ctx, job_id) == "unclear submit: settling"
        job = await store.get(job_id)
        assert job is not None and job.submit_pending_since_ms is not None, "504 is not 'no'"
        assert (await settle_until_done(ctx, job_id)).startswith("adopted ")

    run(long_grace(settings), scenario, marker)
    assert len(fal_proxy.submits_containing(marker)) == 1


def test_a_429_on_a_resubmit_keeps_the_earlier_unclear_submit_pending(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    # A 504 that created nothing, a resubmit after the grace that fal refuses with 429, then
    # one it accepts: the 429 must not clear the marker (the 504's truth is still unknown).
    marker = case()
    fal_proxy.script(
        marker,
        Fault("status", 504, {"detail": "gateway timeout"}),
        Fault("status", 429, {"detail": "rate limited"}),
    )
    short_grace = settings.model_copy(update={"ambiguous_submit_grace_s": 0.2})

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        assert await dispatch_job(ctx, job_id) == "unclear submit: settling"
        await asyncio.sleep(0.3)
        with pytest.raises(Retry):
            await settle_submit(ctx, job_id)
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.SUBMITTING
        assert job.submit_pending_since_ms is not None, "a 429 on a resubmit cleared the marker"
        assert job.resubmits == 0, "a refused resubmit created nothing, so it is not counted"
        assert (await settle_submit(ctx, job_id)).startswith("submitted as ")
        job = await store.get(job_id)
        assert job is not None and (job.submit_attempts, job.resubmits) == (3, 1)
        notes = [note["event"] for note in await store.events(job_id)]
        assert notes == ["resubmit", "resubmit_refused", "resubmit"]

    run(short_grace, scenario, marker)
    assert [r.answered for r in fal_proxy.submits_containing(marker)] == [504, 429, 200]


def test_an_unclear_submit_on_the_last_try_does_not_fail_the_job(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    marker = case()
    fal_proxy.script(marker, Fault("late", delay_s=1.5))

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        assert await dispatch_job(ctx, job_id) == "unclear submit: settling"
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.SUBMITTING, job
        # The settling task is queued: the job is asked about at fal, never just failed.
        assert await store.redis.exists(store.keys.arq_job(settle_task_id(job_id)))
        assert (await settle_until_done(ctx, job_id)).startswith(("adopted ", "settled: "))

    run(long_grace(settings), scenario, marker, job_try=settings.dispatch_max_tries)
    assert len(fal_proxy.submits_containing(marker)) == 1


def test_one_unknown_request_answer_after_running_polls_does_not_fail_the_job(
    settings: Settings, fal_proxy: FalProxy, simulator: ServerThread
) -> None:
    # Six tries of the reconciler (fal said IN_QUEUE/IN_PROGRESS before), then one 404: a
    # blip, not "fal does not know this request". Only consecutive unknowns count.
    marker = case()

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        assert (await dispatch_job(ctx, job_id)).startswith("submitted as ")
        job = await store.get(job_id)
        assert job is not None and job.fal_status_url and job.fal_request_id
        proxied = job.fal_status_url.replace(simulator.url, fal_proxy.url)
        await store.update_fields(job_id, {"fal_status_url": proxied})
        fal_proxy.script_call(job.fal_request_id, Fault("status", 404, {"status": "NOT_FOUND"}))

        ctx["job_try"] = 6
        with pytest.raises(Retry):
            await fetch_result(ctx, job_id)
        assert fal_proxy.call_scripts[job.fal_request_id] == [], "fal answered 404"
        job = await store.get(job_id)
        assert job is not None and not job.status.is_terminal, job.error
        assert job.unknown_request_streak == 1

        outcome = ""
        for _ in range(120):
            try:
                outcome = await fetch_result(ctx, job_id)
                break
            except Retry:
                await asyncio.sleep(0.5)
        # fal's webhook may have finished it first (a worker runs beside the suite).
        assert outcome in ("fetched", "nothing to fetch")
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED

    run(settings, scenario, marker)


def test_a_job_past_its_deadline_with_its_tasks_lost_is_failed_by_the_sweep(
    settings: Settings, fal_proxy: FalProxy
) -> None:
    marker = case()

    async def scenario(ctx: dict[str, Any], store: JobStore, job_id: str) -> None:
        # Its dispatch task is gone (expired, or Redis lost it) and its deadline has passed.
        await store.redis.delete(store.keys.arq_job(job_id))
        await store.redis.zadd(store.keys.active, {job_id: now_ms() - 1})
        await sweep_jobs(ctx)
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error is not None and job.error["type"] == "deadline_exceeded"
        assert "JOB_DEADLINE_S" in job.error["message"]
        assert await store.deadline_ms(job_id) is None

    run(settings, scenario, marker)
    assert fal_proxy.submits_containing(marker) == []


def test_a_task_that_outlives_its_time_limit_is_retried_not_failed() -> None:
    async def slow(ctx: dict[str, Any], job_id: str) -> str:
        await asyncio.sleep(5)
        return "never"

    with pytest.raises(Retry):
        asyncio.run(within_budget(slow, 0.05)({}, "job_x"))
