"""The budget's Lua steps on the test Redis, without workers: who is admitted when a slot
frees (weights, a tenant at its own max), and a lease whose job was lost expires."""

from __future__ import annotations

import asyncio
import json
import uuid

from redis.asyncio import Redis

from service.budgets import BudgetConfig, TenantLimits
from service.dev.localredis import LocalRedis
from service.jobs import JobStatus
from service.keys import RedisKeys
from service.store import JobStore, Task, now_ms


def make_store(redis: Redis, budget: BudgetConfig) -> JobStore:
    prefix = f"adm{uuid.uuid4().hex[:8]}:"
    return JobStore(redis, RedisKeys(prefix, f"{prefix}queue"), job_retention_s=60, budget=budget)


async def new_job(store: JobStore, tenant: str) -> str:
    job_id = f"job_{uuid.uuid4().hex}"
    fields: dict[str, str | int] = {
        "id": job_id, "tenant": tenant, "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "status": "queued", "created_at_ms": now_ms(), "input": json.dumps({"prompt": "x"}),
    }  # fmt: skip
    await store.create(job_id, tenant, fields, Task(job_id, "dispatch_job", (job_id,)), gated=True)
    return job_id


async def holders(store: JobStore) -> set[str]:
    return {m.decode() for m in await store.redis.zrange(store.keys.inflight, 0, -1)}


async def finish(store: JobStore, job_id: str) -> None:
    moved = await store.transition(job_id, JobStatus.CANCELLED, reason="test", finished=True)
    assert moved.applied


def test_weights_decide_how_many_turns_a_tenant_gets_per_round(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        async with Redis.from_url(redis_server.url) as redis:
            budget = BudgetConfig(max_in_flight=1, tenants={"heavy": TenantLimits(weight=2)})
            store = make_store(redis, budget)
            first = await new_job(store, "heavy")
            jobs = {"heavy": [await new_job(store, "heavy") for _ in range(4)]}
            jobs["light"] = [await new_job(store, "light") for _ in range(2)]
            owner = {j: t for t, ids in jobs.items() for j in ids}
            assert await holders(store) == {first}
            order = []
            current = first
            for _ in range(6):
                await finish(store, current)
                (current,) = await holders(store)
                order.append(owner[current])
            # Rounds of 2 : 1 (the first job, admitted while heavy was alone, ended its round).
            assert order == ["heavy", "heavy", "light", "heavy", "heavy", "light"]
            # Each admitted job's dispatch task is on the queue, under its own id.
            assert await redis.zscore(store.keys.queue, current) is not None

    asyncio.run(scenario())


def test_a_tenant_at_its_own_max_passes_its_turn(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        async with Redis.from_url(redis_server.url) as redis:
            budget = BudgetConfig(max_in_flight=3, tenants={"capped": TenantLimits(1)})
            store = make_store(redis, budget)
            capped = [await new_job(store, "capped") for _ in range(3)]
            other = [await new_job(store, "other") for _ in range(3)]
            assert await holders(store) == {capped[0], other[0], other[1]}
            await finish(store, other[0])
            # The slot goes to `other`: `capped` holds its one already.
            assert await holders(store) == {capped[0], other[1], other[2]}
            await finish(store, capped[0])
            assert await holders(store) == {capped[1], other[1], other[2]}

    asyncio.run(scenario())


def test_a_lease_past_its_expiry_frees_its_slot(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        async with Redis.from_url(redis_server.url) as redis:
            store = make_store(redis, BudgetConfig(max_in_flight=1))
            # A lease whose job record was lost, expired a moment ago.
            await redis.zadd(store.keys.inflight, {"job_lost": now_ms() - 1})
            job_id = await new_job(store, "t")
            assert await holders(store) == {job_id}

            # An unexpired one holds the slot: the next job waits in line, queued.
            store = make_store(redis, BudgetConfig(max_in_flight=1))
            await redis.zadd(store.keys.inflight, {"job_alive": now_ms() + 60_000})
            waiting = await new_job(store, "t")
            assert await holders(store) == {"job_alive"}
            assert await redis.lrange(store.keys.ready_of("t"), 0, -1) == [waiting.encode()]
            assert (await store.get(waiting)).parked  # type: ignore[union-attr]

    asyncio.run(scenario())
