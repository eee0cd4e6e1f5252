"""keep_inputs: one task moves every finished or accepted job's input to the media store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from arq import Retry
from redis.asyncio import Redis

from service.input_archive import BATCH_DELAY_S, BATCH_TASK_NAME, archive_key, keep_input_task
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, now_ms
from tests.support.isolation import isolated
from workers.context import on_shutdown, on_startup, worker_context
from workers.deadlines import PICKUP_SETTLING_MS, sweep_jobs
from workers.keep_input import keep_input, keep_inputs

Scenario = Callable[[dict[str, Any], JobStore], Awaitable[None]]


def _run(config: Settings, scenario: Scenario) -> None:
    async def main() -> None:
        redis = Redis.from_url(config.redis_url)
        ctx: dict[str, Any] = {"settings": config, "redis": redis, "job_try": 1}
        await on_startup(ctx)
        try:
            await scenario(ctx, worker_context(ctx).store)
        finally:
            await on_shutdown(ctx)
            await redis.aclose()

    asyncio.run(main())


async def _job_with_input(store: JobStore, job_id: str) -> bytes:
    """A finished job whose input is still in its hash, as the step that ended it left it."""
    raw = json.dumps({"prompt": f"input of {job_id}", "image_url": "https://x/y.jpg"}).encode()
    fields: dict[str, Any] = {
        "id": job_id,
        "tenant": "tenant-a",
        "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "status": "completed",
        "created_at_ms": now_ms(),
        "updated_at_ms": now_ms(),
        "input": raw,
    }
    await store.redis.hset(store.keys.job(job_id), mapping=fields)  # type: ignore[misc]
    return raw


@asynccontextmanager
async def _listed(store: JobStore, count: int) -> AsyncIterator[dict[str, bytes]]:
    """`count` jobs listed through the real step's follow-up, as acceptance and ends do."""
    inputs = {}
    for n in range(count):
        job_id = f"job_keep{n:02d}"
        inputs[job_id] = await _job_with_input(store, job_id)
        await store.update_fields(job_id, {}, follow_ups=[keep_input_task(store.keys, job_id)])
    yield inputs


def test_a_burst_of_jobs_queues_one_task_that_keeps_every_input(settings: Settings) -> None:
    config = isolated(settings)

    async def scenario(ctx: dict[str, Any], store: JobStore) -> None:
        listed_from_ms = now_ms()
        async with _listed(store, 30) as inputs:
            # One task for the whole burst, every job listed.
            assert await store.redis.zrange(store.keys.queue, 0, -1) == [
                store.keys.singleton_task(BATCH_TASK_NAME).encode()
            ]
            due = await store.redis.zrange(store.keys.inputs_to_keep, 0, -1, withscores=True)
            assert len(due) == 30
            # Each listed for when the task runs, BATCH_DELAY_S after the step that listed it:
            # the rest of a burst joins that run.
            assert min(at_ms for _, at_ms in due) >= listed_from_ms + BATCH_DELAY_S * 1000
            await asyncio.sleep((max(at_ms for _, at_ms in due) - now_ms()) / 1000 + 0.05)
            assert await keep_inputs(ctx) == "kept 30, dropped 0"
            for job_id, raw in inputs.items():
                stored = await store.redis.hmget(store.keys.job(job_id), ["input", "input_key"])  # type: ignore[misc]
                assert stored[0] in (None, b"") and stored[1] == archive_key(job_id).encode()
                assert (config.media_local_dir / archive_key(job_id)).read_bytes() == raw
            assert await store.redis.zcard(store.keys.inputs_to_keep) == 0
            # Run again (a retry, a duplicate enqueue): nothing left to do, nothing changed.
            assert await keep_inputs(ctx) == "kept 0, dropped 0"

    _run(config, scenario)


def test_a_failed_copy_is_tried_again_later_and_dropped_after_the_last_try(
    settings: Settings, tmp_path: Path
) -> None:
    # The media folder is a file: every write fails as a full or read-only disk would.
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")
    config = isolated(settings).model_copy(
        update={"media_local_dir": blocked, "mirror_max_tries": 2}
    )

    async def scenario(ctx: dict[str, Any], store: JobStore) -> None:
        async with _listed(store, 1) as inputs:
            [job_id] = inputs
            await store.redis.zadd(store.keys.inputs_to_keep, {job_id: now_ms()})
            try:
                ended = await keep_inputs(ctx)
            except Retry:
                ended = "retried"
            # Listed again for later, the input still in Redis: the task retries itself when
            # that is soon, and otherwise the sweep enqueues it once it is due.
            [(_, due_ms)] = await store.redis.zrange(
                store.keys.inputs_to_keep, 0, -1, withscores=True
            )
            assert due_ms > now_ms()
            soon = due_ms <= now_ms() + BATCH_DELAY_S * 1000
            assert ended == ("retried" if soon else "kept 0, dropped 0")
            assert await store.redis.hget(store.keys.job(job_id), "input") == inputs[job_id]  # type: ignore[misc]
            await store.redis.zadd(store.keys.inputs_to_keep, {job_id: now_ms()})
            assert await keep_inputs(ctx) == "kept 0, dropped 1"
            stored = await store.redis.hmget(store.keys.job(job_id), ["input", "input_key"])  # type: ignore[misc]
            assert stored[0] in (None, b"") and stored[1] is None
            assert not await store.redis.exists(
                store.keys.inputs_to_keep, store.keys.input_keep_failures
            )

    _run(config, scenario)


def test_inputs_listed_with_no_task_to_keep_them_are_picked_up_by_the_sweep(
    settings: Settings,
) -> None:
    config = isolated(settings)

    async def scenario(ctx: dict[str, Any], store: JobStore) -> None:
        await _job_with_input(store, "job_stranded")
        # Listed as the task ended: its enqueue found the running task and was skipped.
        late_ms = now_ms() - PICKUP_SETTLING_MS - 1
        await store.redis.zadd(store.keys.inputs_to_keep, {"job_stranded": late_ms})
        assert "recovered 1 lost tasks" in await sweep_jobs(ctx)
        assert await store.redis.zrange(store.keys.queue, 0, -1) == [
            store.keys.singleton_task(BATCH_TASK_NAME).encode()
        ]
        assert "recovered 0 lost tasks" in await sweep_jobs(ctx)

    _run(config, scenario)


def test_a_keep_input_task_queued_by_the_previous_version_still_keeps_its_input(
    settings: Settings,
) -> None:
    config = isolated(settings)

    async def scenario(ctx: dict[str, Any], store: JobStore) -> None:
        raw = await _job_with_input(store, "job_legacy")
        assert await keep_input(ctx, "job_legacy") == "kept 1, dropped 0"
        assert (config.media_local_dir / archive_key("job_legacy")).read_bytes() == raw

    _run(config, scenario)


def test_a_job_listed_while_the_task_runs_is_kept_by_its_retry_not_left_to_the_sweep(
    settings: Settings,
) -> None:
    config = isolated(settings)

    async def scenario(ctx: dict[str, Any], store: JobStore) -> None:
        # Listed as a step does while the task runs: its enqueue found the task running.
        await _job_with_input(store, "job_late")
        due_ms = now_ms() + 2_000
        await store.redis.zadd(store.keys.inputs_to_keep, {"job_late": due_ms})
        try:
            await keep_inputs(ctx)
        except Retry as retry:
            assert retry.defer_score is not None
            assert 1_000 <= retry.defer_score <= 2_000
        else:
            raise AssertionError("keep_inputs ended with a listed job due within its delay")
        # A failed copy's next try far off is the sweep's to enqueue: the task ends.
        await store.redis.zadd(store.keys.inputs_to_keep, {"job_late": now_ms() + 60_000}, xx=True)
        assert await keep_inputs(ctx) == "kept 0, dropped 0"

    _run(config, scenario)


def test_two_deployments_sharing_a_redis_each_queue_their_own_keep_inputs_task(
    settings: Settings,
) -> None:
    # ARQ's job and in-progress keys are global: a fixed task id shared by two key prefixes
    # had one deployment skip its enqueue (and its run) while the other's task ran.
    elsewhere = isolated(settings)

    async def scenario(ctx: dict[str, Any], store: JobStore) -> None:
        keys = RedisKeys(elsewhere.redis_key_prefix, elsewhere.arq_queue_name)
        other = JobStore(store.redis, keys, job_retention_s=elsewhere.job_retention_s)
        async with _listed(store, 1):
            running = store.keys.arq_in_progress(store.keys.singleton_task(BATCH_TASK_NAME))
            await store.redis.set(running, b"1", px=10_000)  # as ARQ marks a task it runs
            async with _listed(other, 1):
                task_id = other.keys.singleton_task(BATCH_TASK_NAME)
                assert await other.redis.zrange(other.keys.queue, 0, -1) == [task_id.encode()]

    _run(isolated(settings), scenario)
