"""The job event stream: every job from its creation, readable per job or all together, with a
wake-up for waiters, capped; and a real job's events through the simulator."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
from redis.asyncio import Redis

from service.dev.localredis import LocalRedis
from service.events import EventLog, JobEvent
from service.input_archive import KeptInputs
from service.jobs import JobStatus
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, Task, now_ms
from tests.conftest import i2v_body, is_terminal, wait_for
from tests.support.jobstores import legacy_job, new_job, run_with_store

HISTORY_LINE = re.compile(r"(\d+)-(\d+) (-|[a-z_]+) ([a-z_]+) (-?\d+) ([a-z_]*)")


async def to_completed(store: JobStore, job_id: str) -> None:
    """queued -> submitting -> submitted -> completed, each step as the pipeline takes it."""
    assert (await store.claim_submit(job_id)).claimed
    assert (await store.transition(job_id, JobStatus.SUBMITTED, reason="fal_accepted")).applied
    moved = await store.transition(job_id, JobStatus.COMPLETED, reason="webhook", finished=True)
    assert moved.applied


def test_a_new_job_starts_its_history_with_a_queued_event(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)

        [event] = await store.event_log.read_job_events(job_id)
        job = await store.get(job_id)
        assert job is not None
        assert (event.job_id, event.tenant, event.endpoint) == (job_id, job.tenant, job.endpoint)
        assert (event.from_status, event.to_status, event.reason) == (
            None,
            JobStatus.QUEUED,
            "created",
        )
        assert event.at_ms == job.created_at_ms
        assert await store.event_log.read_events() == [event]

    run_with_store(redis_server.url, scenario)


def test_a_jobs_history_is_one_field_of_its_hash_with_the_global_streams_ids(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        await to_completed(store, job_id)

        history = await store.redis.hget(store.keys.job(job_id), "history")  # type: ignore[misc]
        assert history is not None
        lines = history.decode().splitlines(keepends=True)
        assert all(line.endswith("\n") for line in lines)
        parsed = [HISTORY_LINE.fullmatch(line[:-1]) for line in lines]
        assert all(parsed), lines
        in_global = await store.event_log.read_events()
        assert [f"{m[1]}-{m[2]}" for m in parsed if m] == [event.id for event in in_global]
        assert [(m[3], m[4], m[6]) for m in parsed if m] == [
            ("-", "queued", "created"),
            ("queued", "submitting", "submit"),
            ("submitting", "submitted", "fal_accepted"),
            ("submitted", "completed", "webhook"),
        ]
        # at_ms is kept as its distance from the id's ms, and read back whole.
        assert await store.event_log.read_job_events(job_id) == in_global
        assert not await store.redis.exists(store.keys.job_transitions(job_id))

    run_with_store(redis_server.url, scenario)


def test_events_after_a_cursor_are_compared_as_numbers_not_as_strings(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        # Ids that sort otherwise as strings: "5-10" < "5-9" and "10-0" < "5-9".
        history = (
            "5-9 - queued 0 created\n5-10 queued submitting 1 submit\n10-0 submitting failed -2 \n"
        )
        await store.redis.hset(store.keys.job(job_id), "history", history)  # type: ignore[misc]
        log = store.event_log

        every = await log.read_job_events(job_id)
        assert [(e.id, e.at_ms, e.reason) for e in every] == [
            ("5-9", 5, "created"),
            ("5-10", 6, "submit"),
            ("10-0", 8, ""),
        ]
        assert await log.read_job_events(job_id, after_id="5-9") == every[1:]
        assert await log.read_job_events(job_id, after_id="5-10") == every[2:]
        assert await log.read_job_events(job_id, after_id="5-9", count=1) == every[1:2]
        assert await log.read_job_events(job_id, after_id="10-0") == []

    run_with_store(redis_server.url, scenario)


def test_a_job_written_by_the_previous_version_reads_and_extends_its_old_stream(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await legacy_job(store)
        log = store.event_log
        [created] = await log.read_job_events(job_id)
        assert (created.from_status, created.to_status, created.reason) == (
            None,
            JobStatus.QUEUED,
            "created",
        )

        await to_completed(store, job_id)

        job_key, transitions = store.keys.job(job_id), store.keys.job_transitions(job_id)
        assert not await store.redis.hexists(job_key, "history")  # type: ignore[misc]
        assert await store.redis.xlen(transitions) == 4
        history = await log.read_job_events(job_id)
        assert history == await log.read_events()
        assert [(e.to_status, e.reason) for e in history] == [
            (JobStatus.QUEUED, "created"),
            (JobStatus.SUBMITTING, "submit"),
            (JobStatus.SUBMITTED, "fal_accepted"),
            (JobStatus.COMPLETED, "webhook"),
        ]
        assert await log.read_job_events(job_id, after_id=history[1].id) == history[2:]
        # Its stream still goes with the job.
        for key in (job_key, transitions):
            assert 0 < await store.redis.ttl(key) <= store.job_retention_s

    run_with_store(redis_server.url, scenario)


def test_a_step_the_previous_version_ran_on_a_new_job_is_read_with_its_history(
    redis_server: LocalRedis,
) -> None:
    """While a deployment upgrades, an old worker appends a new job's change to the job's own
    stream (it knows no `history` field): the job's events are both, in order."""

    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        [created] = await store.event_log.read_job_events(job_id)
        fields = {
            "job_id": job_id,
            "tenant": created.tenant,
            "endpoint": created.endpoint,
            "from": "queued",
            "to": "submitting",
            "at_ms": now_ms(),
            "reason": "submit",
        }
        # The previous version's step: both streams under one id, and the status.
        old_id = (await store.redis.xadd(store.keys.events, fields)).decode()  # type: ignore[arg-type]
        await store.redis.xadd(store.keys.job_transitions(job_id), fields, id=old_id)  # type: ignore[arg-type]
        await store.redis.hset(store.keys.job(job_id), "status", "submitting")  # type: ignore[misc]
        moved = await store.transition(job_id, JobStatus.FAILED, reason="dispatch", finished=True)
        assert moved.applied

        history = await store.event_log.read_job_events(job_id)
        assert [e.id for e in history] == [created.id, old_id, moved.event_id]
        assert history == await store.event_log.read_events()
        assert await store.event_log.read_job_events(job_id, after_id=created.id) == history[1:]
        assert await store.event_log.read_job_events(job_id, after_id=old_id) == history[2:]

    run_with_store(redis_server.url, scenario)


def test_a_jobs_history_survives_every_later_write(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        await to_completed(store, job_id)
        before: list[JobEvent] = await store.event_log.read_job_events(job_id)

        await store.update_fields(job_id, {"callback_status": "delivered", "result": "{}"})
        refused = await store.transition(job_id, JobStatus.FAILED, reason="late")
        assert not refused.applied
        # keep_inputs takes the input out of the hash.
        await KeptInputs(store.redis, store.keys).record({job_id: "inputs/kept.json"})

        fields = await store.fields(job_id, "input", "input_key")
        assert fields == [None, "inputs/kept.json"]
        assert await store.event_log.read_job_events(job_id) == before
        assert 0 < await store.redis.ttl(store.keys.job(job_id)) <= store.job_retention_s

    run_with_store(redis_server.url, scenario)


def test_a_replayed_creation_appends_no_second_event(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = f"job_{uuid.uuid4().hex}"
        fields = {
            "id": job_id,
            "tenant": "tenant-a",
            "endpoint": "fal-ai/veo3.1/fast/text-to-video",
            "status": "queued",
            "created_at_ms": now_ms(),
            "input": "{}",
        }
        for _ in range(2):
            await store.create(
                job_id,
                "tenant-a",
                fields,
                Task(job_id, "dispatch_job", (job_id,)),
                idempotency_key="same",
                fingerprint="f",
            )
        assert len(await store.event_log.read_events()) == 1

    run_with_store(redis_server.url, scenario)


def test_a_reader_resumes_after_the_last_event_it_saw(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        log = store.event_log
        first, second = await new_job(store), await new_job(store)
        claimed = await store.claim_submit(first)
        assert claimed.claimed
        [created, submitting] = await log.read_job_events(first)

        assert await log.read_job_events(first, after_id=created.id) == [submitting]
        assert await log.read_job_events(first, after_id=submitting.id) == []
        everything = await log.read_events()
        assert [(e.job_id, e.to_status) for e in everything] == [
            (first, JobStatus.QUEUED),
            (second, JobStatus.QUEUED),
            (first, JobStatus.SUBMITTING),
        ]
        assert await log.read_events(after_id=everything[0].id, count=1) == [everything[1]]
        assert await log.last_event_id() == submitting.id

    run_with_store(redis_server.url, scenario)


def test_a_global_reader_can_block_until_the_next_event(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        cursor = await store.event_log.last_event_id()
        assert cursor is not None
        waiting = asyncio.create_task(store.event_log.read_events(cursor, block_ms=5000))
        await asyncio.sleep(0.05)
        moved = await store.transition(job_id, JobStatus.CANCELLED, reason="cancel")
        [event] = await asyncio.wait_for(waiting, 5)
        assert event.id == moved.event_id

    run_with_store(redis_server.url, scenario)


def test_each_state_change_publishes_its_event_id_on_the_jobs_channel(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        async with store.redis.pubsub() as pubsub:
            await pubsub.subscribe(store.keys.job_changed(job_id))
            assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]

            assert (await store.claim_submit(job_id)).claimed
            await store.update_fields(job_id, {"callback_status": "retrying"})  # no event
            moved = await store.transition(job_id, JobStatus.FAILED, reason="dispatch")

            published = []
            while (message := await pubsub.get_message(timeout=0.5)) is not None:
                published.append(message["data"].decode())
        events = await store.event_log.read_job_events(job_id)
        assert published == [events[1].id, events[2].id]
        assert events[2].id == moved.event_id

    run_with_store(redis_server.url, scenario)


def test_the_global_stream_is_capped(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        first = await new_job(store)
        for _ in range(299):
            await new_job(store)
        # MAXLEN ~ trims whole stream nodes (100 entries each by default), so "about 10".
        assert await store.redis.xlen(store.keys.events) <= 200
        assert first not in {event.job_id for event in await store.event_log.read_events()}
        # Each job keeps its own history regardless.
        assert len(await store.event_log.read_job_events(first)) == 1

    run_with_store(redis_server.url, scenario, event_stream_maxlen=10)


def test_a_job_through_the_simulator_shows_every_state_change_in_order(
    client: httpx.Client, settings: Settings
) -> None:
    job_id = client.post("/v1/jobs", json=i2v_body(f"events-{uuid.uuid4().hex[:8]}")).json()["id"]
    assert wait_for(client, job_id, is_terminal)["status"] == "completed"

    async def read() -> tuple[list[tuple[JobStatus | None, JobStatus, str]], bool]:
        async with Redis.from_url(settings.redis_url) as redis:
            log = EventLog(redis, RedisKeys(settings.redis_key_prefix, settings.arq_queue_name))
            history = await log.read_job_events(job_id)
            in_global = await log.read_events(after_id=history[0].id, count=10_000)
            everywhere = all(event in [history[0], *in_global] for event in history)
            return [(e.from_status, e.to_status, e.reason) for e in history], everywhere

    history, everywhere = asyncio.run(read())
    assert history[:3] == [
        (None, JobStatus.QUEUED, "created"),
        (JobStatus.QUEUED, JobStatus.SUBMITTING, "submit"),
        (JobStatus.SUBMITTING, JobStatus.SUBMITTED, "fal_accepted"),
    ]
    # On a loaded machine the suite's short reconcile delay can ask fal before its webhook
    # comes: then the job is seen running first, and either report may end it.
    ending = [(frm, to) for frm, to, _ in history[3:]]
    assert ending in (
        [(JobStatus.SUBMITTED, JobStatus.COMPLETED)],
        [
            (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS),
            (JobStatus.IN_PROGRESS, JobStatus.COMPLETED),
        ],
    ), history
    assert history[-1][2] in ("webhook", "result")
    assert everywhere, "each of the job's events is in the global stream under the same id"
