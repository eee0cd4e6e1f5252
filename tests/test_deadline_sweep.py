"""The deadline sweep walks every active job over successive runs, however many there are."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis

from service.jobs import dispatch_task_id
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, now_ms
from tests.support.isolation import isolated
from workers.context import on_shutdown, on_startup
from workers.deadlines import SETTLING_MS, sweep_jobs


def test_successive_pages_cover_every_active_job_then_start_over(settings: Settings) -> None:
    config = isolated(settings)

    async def main() -> None:
        async with Redis.from_url(config.redis_url) as redis:
            store = JobStore(
                redis, RedisKeys(config.redis_key_prefix, config.arq_queue_name), job_retention_s=60
            )
            at_ms = now_ms()
            # Seven jobs, two of them sharing a deadline across a page boundary.
            deadlines = [at_ms + d for d in (1000, 2000, 3000, 3000, 4000, 5000, 6000)]
            await redis.zadd(store.keys.active, {f"job_{i}": d for i, d in enumerate(deadlines)})
            await redis.zadd(store.keys.active, {"job_overdue": at_ms - 1})
            seen: list[str] = []
            pages = 0
            while True:
                page = await store.next_active_page(after_deadline_ms=at_ms, limit=3)
                pages += 1
                seen.extend(page)
                if len(page) < 3:
                    break
            assert set(seen) == {f"job_{i}" for i in range(7)}, "overdue ones are not paged here"
            # Each page starts at the last one's final deadline: 0-2, 2-4, 4-6, 6.
            assert pages == 4
            # After the last page the walk starts over.
            assert await store.next_active_page(after_deadline_ms=at_ms, limit=3) == [
                "job_0",
                "job_1",
                "job_2",
            ]

    asyncio.run(main())


def test_lost_tasks_beyond_one_sweeps_batch_are_all_re_enqueued_by_later_sweeps(
    settings: Settings,
) -> None:
    config = isolated(settings)

    async def main() -> None:
        redis = Redis.from_url(config.redis_url)
        ctx: dict[str, Any] = {"settings": config, "redis": redis, "job_try": 1}
        await on_startup(ctx)
        store = JobStore(
            redis, RedisKeys(config.redis_key_prefix, config.arq_queue_name), job_retention_s=60
        )
        try:
            at_ms = now_ms()
            ids = [f"job_sweep{i}" for i in range(5)]
            for i, job_id in enumerate(ids):
                # A queued job whose dispatch task is gone, last changed long ago.
                fields = {
                    "id": job_id,
                    "tenant": "tenant-a",
                    "endpoint": "fal-ai/veo3.1/fast/image-to-video",
                    "status": "queued",
                    "created_at_ms": at_ms - SETTLING_MS - 1000,
                    "updated_at_ms": at_ms - SETTLING_MS - 1000,
                    "input": json.dumps({"prompt": "x", "image_url": "https://x/y.jpg"}),
                    "input_sha256": "0" * 64,
                    "submit_attempts": 0,
                }
                await redis.hset(store.keys.job(job_id), mapping=fields)
                await redis.zadd(store.keys.active, {job_id: at_ms + 3_600_000 + i})
            first = await sweep_jobs(ctx, batch=2)
            assert "recovered 2 lost tasks," in first, first
            # Pages overlap by one (0-1, 1-2, 2-3, 3-4): four sweeps reach all five.
            summaries = [first] + [await sweep_jobs(ctx, batch=2) for _ in range(3)]
            assert all(
                [await redis.exists(store.keys.arq_job(dispatch_task_id(j))) for j in ids]
            ), summaries
            # One more round finds nothing lost: the tasks are queued now.
            assert "recovered 0 lost tasks," in await sweep_jobs(ctx, batch=2)
        finally:
            await on_shutdown(ctx)
            await redis.aclose()

    asyncio.run(main())
