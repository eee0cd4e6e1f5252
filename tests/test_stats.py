"""GET /v1/stats: counters folded from the event stream, per tenant, at bounded cost."""

from __future__ import annotations

import json
import uuid

import httpx

from service.dev.localredis import LocalRedis
from service.jobs import JobStatus
from service.stats import FOLD_BATCH, FOLD_ROUNDS, Stats
from service.store import JobStore, Task, now_ms
from tests.conftest import TENANT_B_KEY, bearer, i2v_body, is_terminal, wait_for
from tests.support.jobstores import new_job, run_with_store


async def job_of(store: JobStore, tenant: str) -> str:
    job_id = f"job_{uuid.uuid4().hex}"
    fields: dict[str, str | int] = {
        "id": job_id, "tenant": tenant, "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "status": "queued", "created_at_ms": now_ms(), "input": json.dumps({"prompt": "x"}),
    }  # fmt: skip
    await store.create(job_id, tenant, fields, Task(job_id, "dispatch_job", (job_id,)))
    return job_id


def test_counts_follow_each_job_through_its_states(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        stats = Stats(store.redis, store.keys)
        first, second, third = [await new_job(store) for _ in range(3)]
        await store.claim_submit(first)
        await store.transition(first, JobStatus.SUBMITTED, reason="fal_accepted")
        await store.claim_submit(second)
        await store.transition(second, JobStatus.FAILED, reason="dispatch", finished=True)

        answer = await stats.read("tenant-a", budget=10)
        assert answer["counts"] == {"queued": 1, "submitting": 0, "submitted": 1, "in_progress": 0}
        assert answer["last_hour"] == {"completed": 0, "failed": 1, "cancelled": 0}
        assert answer["in_flight"] == {"count": 1, "budget": 10}
        assert answer["queue"]["depth"] == 1
        assert answer["queue"]["oldest_age_s"] is not None
        assert answer["queue"]["tasks_due"] is None, "an operator's number only"
        assert answer["complete"] is True
        series = answer["throughput"]["series"]
        assert len(series) == 60 and series[-1]["failed"] == 1

        # A second read folds only what is new: nothing is counted twice.
        await store.transition(third, JobStatus.CANCELLED, reason="client", finished=True)
        again = await stats.read("tenant-a")
        assert again["counts"]["queued"] == 0 and again["queue"]["depth"] == 0
        assert again["queue"]["oldest_age_s"] is None
        assert again["last_hour"] == {"completed": 0, "failed": 1, "cancelled": 1}

    run_with_store(redis_server.url, scenario)


def test_a_tenant_sees_its_own_numbers_and_all_tenants_add_up(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        stats = Stats(store.redis, store.keys)
        for tenant in ("tenant-a", "tenant-a", "tenant-b"):
            await job_of(store, tenant)

        assert (await stats.read("tenant-b"))["counts"]["queued"] == 1
        everyone = await stats.read(None)
        assert everyone["scope"] == {"tenant": None, "all_tenants": True}
        assert everyone["counts"]["queued"] == 3
        assert everyone["tenants"]["tenant-a"]["queued"] == 2
        assert everyone["queue"]["tasks_due"] == 3, "the three dispatch tasks"

    run_with_store(redis_server.url, scenario)


def test_a_backlog_is_folded_in_bounded_steps_and_said_to_be_incomplete(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        stats = Stats(store.redis, store.keys)
        backlog = FOLD_BATCH * FOLD_ROUNDS + 5
        async with store.redis.pipeline(transaction=False) as pipe:
            for _ in range(backlog):
                pipe.xadd(
                    store.keys.events,
                    {"job_id": f"job_{uuid.uuid4().hex}", "tenant": "tenant-a", "endpoint": "e",
                     "from": "", "to": "queued", "at_ms": now_ms(), "reason": "created"},
                )  # fmt: skip
            await pipe.execute()

        first = await stats.read("tenant-a")
        assert first["complete"] is False
        assert first["counts"]["queued"] == FOLD_BATCH * FOLD_ROUNDS
        second = await stats.read("tenant-a")
        assert second["complete"] is True and second["counts"]["queued"] == backlog

    run_with_store(redis_server.url, scenario, event_stream_maxlen=100_000)


def test_events_trimmed_before_they_were_counted_make_the_numbers_incomplete(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        stats = Stats(store.redis, store.keys)
        await new_job(store)
        assert (await stats.read("tenant-a"))["complete"] is True
        for _ in range(300):  # far past the stream's cap of 10
            await new_job(store)
        assert (await stats.read("tenant-a"))["complete"] is False

    run_with_store(redis_server.url, scenario, event_stream_maxlen=10)


def test_stats_over_http_are_scoped_to_the_key(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs", json=i2v_body(f"stats-{uuid.uuid4().hex[:8]}")).json()["id"]
    wait_for(client, job_id, is_terminal)

    mine = client.get("/v1/stats")
    assert mine.status_code == 200, mine.text
    assert mine.headers["cache-control"] == "no-store"
    body = mine.json()
    assert body["scope"] == {"tenant": "tenant-a", "all_tenants": False}
    assert sum(point["completed"] for point in body["throughput"]["series"]) >= 1
    assert "tenants" not in body
    theirs = httpx.get(f"{client.base_url}/v1/stats", headers=bearer(TENANT_B_KEY)).json()
    assert theirs["scope"]["tenant"] == "tenant-b"
    assert httpx.get(f"{client.base_url}/v1/stats").status_code == 401


def test_a_job_input_is_read_by_its_tenant_only(client: httpx.Client) -> None:
    body = i2v_body(f"input-{uuid.uuid4().hex[:8]}")
    job_id = client.post("/v1/jobs", json=body).json()["id"]

    answer = client.get(f"/v1/jobs/{job_id}/input")
    assert answer.status_code == 200, answer.text
    assert answer.json()["input"]["prompt"] == body["input"]["prompt"]
    assert answer.json()["input"]["image_url"].startswith("data:image/jpeg;base64,")
    other = httpx.get(f"{client.base_url}/v1/jobs/{job_id}/input", headers=bearer(TENANT_B_KEY))
    assert other.status_code == 404
