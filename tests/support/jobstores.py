"""A JobStore of its own for a test: a fresh key prefix and queue on the test Redis.

Nothing else (the running worker included) reads those keys, so each test sees only what it
did, in the global event stream too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from service.keys import RedisKeys
from service.store import JobStore, Task, now_ms

StoreScenario = Callable[[JobStore], Awaitable[None]]


def run_with_store(
    redis_url: str, scenario: StoreScenario, *, event_stream_maxlen: int = 1000
) -> None:
    async def main() -> None:
        prefix = f"t{uuid.uuid4().hex[:10]}:"
        async with Redis.from_url(redis_url) as redis:
            store = JobStore(
                redis,
                RedisKeys(prefix, f"{prefix}queue"),
                job_retention_s=60,
                event_stream_maxlen=event_stream_maxlen,
            )
            await scenario(store)

    asyncio.run(main())


async def new_job(
    store: JobStore, *, callback_url: str | None = None, callback_events: str | None = None
) -> str:
    """Record a queued job (tenant-a, a Veo endpoint) with its dispatch task; returns its id.

    Without `callback_events` the job is as versions before event selection recorded it."""
    job_id = f"job_{uuid.uuid4().hex}"
    fields: dict[str, str | int] = {
        "id": job_id,
        "tenant": "tenant-a",
        "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "status": "queued",
        "created_at_ms": now_ms(),
        "input": json.dumps({"prompt": "a lighthouse"}),
        "submit_attempts": 0,
    }
    if callback_url:
        fields["callback_url"] = callback_url
    if callback_events is not None:
        fields["callback_events"] = callback_events
    await store.create(job_id, "tenant-a", fields, Task(job_id, "dispatch_job", (job_id,)))
    return job_id


async def legacy_job(store: JobStore) -> str:
    """Record a queued job as versions before the `history` field did: the same hash without
    that field, and its creation event in a stream of its own (`job_transitions`) under the
    same entry id as in the global stream. Returns its id."""
    job_id = await new_job(store)
    job_key, transitions = store.keys.job(job_id), store.keys.job_transitions(job_id)
    [created] = await store.event_log.read_job_events(job_id)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hdel(job_key, "history")
        pipe.xadd(
            transitions,
            {
                "job_id": job_id,
                "tenant": created.tenant,
                "endpoint": created.endpoint,
                "from": "",
                "to": created.to_status.value,
                "at_ms": created.at_ms,
                "reason": created.reason,
            },
            id=created.id,
        )
        await pipe.execute()
    return job_id
