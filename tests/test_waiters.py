"""The waiter hub: one pattern subscription wakes the waiters of the job that changed, misses
nothing between a waiter's read and its wait, and wakes everyone when it comes back after a
lost connection; wait_for_job on top of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from service.dev.localredis import LocalRedis
from service.events import JobEvent
from service.jobs import JobStatus
from service.keys import RedisKeys
from service.store import JobStore
from service.streams import job_history
from service.waiters import JobWaiters, wait_for_job
from tests.support.jobstores import legacy_job, new_job, run_with_store


async def started_hub(store: JobStore) -> JobWaiters:
    hub = JobWaiters(store.redis, store.keys)
    await hub.start()
    await asyncio.wait_for(hub.subscribed.wait(), 5)
    return hub


def test_a_change_wakes_the_waiters_of_that_job_only(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        hub = await started_hub(store)
        try:
            changing, quiet = await new_job(store), await new_job(store)
            with (
                hub.watch(changing) as woken,
                hub.watch(changing) as also,
                hub.watch(quiet) as not_,
            ):
                assert hub.waiting == 3
                await store.transition(changing, JobStatus.CANCELLED, reason="cancel")
                assert await woken.changed(2) and await also.changed(2)
                assert not await not_.changed(0.2)
            assert hub.waiting == 0
        finally:
            await hub.stop()

    run_with_store(redis_server.url, scenario)


def test_a_change_between_the_read_and_the_wait_is_not_lost(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        hub = await started_hub(store)
        try:
            job_id = await new_job(store)
            with hub.watch(job_id) as watch:
                await store.get(job_id)  # the waiter's read...
                await store.transition(job_id, JobStatus.CANCELLED, reason="cancel")
                await asyncio.sleep(0.2)  # ...the wake-up arrives before the waiter waits
                started = time.monotonic()
                assert await watch.changed(5)
                assert time.monotonic() - started < 0.05
                assert not await watch.changed(0), "one wake-up, taken once"
        finally:
            await hub.stop()

    run_with_store(redis_server.url, scenario)


def test_everyone_is_woken_when_the_subscription_comes_back(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        name = f"hub-{uuid.uuid4().hex[:8]}"
        async with Redis.from_url(redis_server.url, client_name=name) as redis:
            hub = JobWaiters(redis, store.keys, reconnect_delay_s=0.05)
            await hub.start()
            try:
                await asyncio.wait_for(hub.subscribed.wait(), 5)
                job_id = await new_job(store)
                with hub.watch(job_id) as watch:
                    clients = await store.redis.client_list(_type="pubsub")
                    [mine] = [c for c in clients if c["name"] == name]
                    await store.redis.client_kill_filter(_id=mine["id"])
                    # Nothing changed, but what was published while it was down is unknown.
                    assert await watch.changed(5)
                    await asyncio.wait_for(hub.subscribed.wait(), 5)
                    assert hub.activations == 2
                    while await watch.changed(0):
                        pass  # the wake-ups of the loss and of the comeback
                    await store.transition(job_id, JobStatus.CANCELLED, reason="cancel")
                    assert await watch.changed(2), "the new subscription hears changes"
            finally:
                await hub.stop()

    run_with_store(redis_server.url, scenario)


def test_wait_for_job_returns_a_finished_job_at_once_and_a_running_one_after_the_wait(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        hub = await started_hub(store)
        try:
            running = await new_job(store)
            started = time.monotonic()
            job = await wait_for_job(store, hub, running, 0.3, tenant="tenant-a")
            assert job is not None and job.status is JobStatus.QUEUED
            assert 0.3 <= time.monotonic() - started < 1.0

            await store.transition(running, JobStatus.CANCELLED, reason="cancel")
            started = time.monotonic()
            job = await wait_for_job(store, hub, running, 30, tenant="tenant-a")
            assert job is not None and job.status is JobStatus.CANCELLED
            assert time.monotonic() - started < 0.1

            assert await wait_for_job(store, hub, running, 30, tenant="tenant-b") is None
            assert await wait_for_job(store, hub, "job_missing", 30, tenant="tenant-a") is None
        finally:
            await hub.stop()

    run_with_store(redis_server.url, scenario)


def test_wait_for_job_wakes_on_the_finishing_change_not_before(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        hub = await started_hub(store)
        try:
            job_id = await new_job(store)
            waiting = asyncio.create_task(wait_for_job(store, hub, job_id, 30, tenant="tenant-a"))
            await asyncio.sleep(0.1)
            assert (await store.claim_submit(job_id)).claimed
            await asyncio.sleep(0.1)
            assert not waiting.done(), "submitting is not finished: it waits on"
            moved = await store.transition(job_id, JobStatus.FAILED, reason="dispatch")
            job = await asyncio.wait_for(waiting, 2)
            assert job is not None and job.status is JobStatus.FAILED
            assert moved.applied
        finally:
            await hub.stop()

    run_with_store(redis_server.url, scenario)


async def statuses_of(events: AsyncIterator[JobEvent]) -> list[str]:
    return [event.to_status.value async for event in events]


def test_a_job_stream_follows_new_and_previous_version_jobs_from_a_cursor_to_the_end(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        hub = await started_hub(store)
        try:
            for job_id in (await new_job(store), await legacy_job(store)):
                assert (await store.claim_submit(job_id)).claimed
                [created, _] = await store.event_log.read_job_events(job_id)
                job = await store.get(job_id)
                assert job is not None

                events = job_history(store, hub, job, created.id, max_s=10)
                following = asyncio.create_task(statuses_of(events))
                await asyncio.sleep(0.1)
                await store.transition(job_id, JobStatus.SUBMITTED, reason="fal_accepted")
                await store.transition(job_id, JobStatus.COMPLETED, reason="webhook")
                assert await asyncio.wait_for(following, 5) == [
                    "submitting",
                    "submitted",
                    "completed",
                ]
        finally:
            await hub.stop()

    run_with_store(redis_server.url, scenario)


def test_the_pattern_matches_only_this_prefixs_channels() -> None:
    keys = RedisKeys("odd*[p]:", "q")
    assert keys.job_changed_pattern == r"odd\*\[p\]:job:*:changed"
    assert keys.job_id_of_changed(keys.job_changed("job_1")) == "job_1"
    assert keys.job_id_of_changed("odd*[p]:job::changed") is None
    assert keys.job_id_of_changed(keys.job_transitions("job_1")) is None
