"""The transition step against a real Redis: checked by the table, written with its event and
its follow-up tasks in one atomic step, or not written at all."""

from __future__ import annotations

import pytest
from arq.jobs import deserialize_job

from service import tasks
from service.dev.localredis import LocalRedis
from service.jobs import JobStatus
from service.store import JobStore, Task, now_ms
from tests.support.jobstores import legacy_job, new_job, run_with_store

# From queued, the moves that bring a job to each status.
WAY_TO: dict[JobStatus, list[JobStatus]] = {
    JobStatus.SUBMITTING: [JobStatus.SUBMITTING],
    JobStatus.SUBMITTED: [JobStatus.SUBMITTING, JobStatus.SUBMITTED],
    JobStatus.IN_PROGRESS: [JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS],
    JobStatus.COMPLETED: [JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.COMPLETED],
    JobStatus.FAILED: [JobStatus.SUBMITTING, JobStatus.FAILED],
}


async def bring_to(store: JobStore, job_id: str, status: JobStatus) -> None:
    for step in WAY_TO[status]:
        moved = await store.transition(job_id, step, reason="test")
        assert moved.applied, (step, moved)


async def snapshot(store: JobStore, job_id: str) -> tuple[object, ...]:
    """Everything a step may write: the job (its history too), the global stream, the queue,
    ARQ's job keys."""
    redis, keys = store.redis, store.keys
    return (
        await redis.hgetall(keys.job(job_id)),  # type: ignore[misc]
        await redis.xrange(keys.events),
        await redis.zrange(keys.queue, 0, -1, withscores=True),
        sorted(await redis.keys("arq:job:*")),
        await redis.ttl(keys.job(job_id)),
    )


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (JobStatus.COMPLETED, JobStatus.FAILED),
        (JobStatus.FAILED, JobStatus.COMPLETED),
        (JobStatus.COMPLETED, JobStatus.CANCELLED),
        (JobStatus.SUBMITTED, JobStatus.SUBMITTING),
        (JobStatus.IN_PROGRESS, JobStatus.IN_PROGRESS),
    ],
)
def test_a_move_the_table_refuses_writes_nothing_and_appends_no_event(
    redis_server: LocalRedis, start: JobStatus, to: JobStatus
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store, callback_url="https://example.com/hook")
        await bring_to(store, job_id, start)
        before = await snapshot(store, job_id)

        moved = await store.transition(
            job_id,
            to,
            reason="webhook",
            fields={"error": '{"type": "late"}', "completed_at_ms": now_ms()},
            follow_ups=[Task(f"refused:{job_id}", "notify_job", (job_id,))],
            finished=True,
        )

        assert (moved.applied, moved.previous, moved.event_id) == (False, start, None)
        assert await snapshot(store, job_id) == before

    run_with_store(redis_server.url, scenario)


def test_a_refused_move_notes_the_late_report_but_appends_no_event(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        await bring_to(store, job_id, JobStatus.COMPLETED)
        events_before = await store.redis.xlen(store.keys.events)

        moved = await store.transition(
            job_id, JobStatus.FAILED, reason="webhook", refused_event={"event": "late_outcome"}
        )

        assert not moved.applied
        assert [note["event"] for note in await store.events(job_id)] == ["late_outcome"]
        assert await store.redis.xlen(store.keys.events) == events_before
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED

    run_with_store(redis_server.url, scenario)


def test_every_applied_move_appends_exactly_one_event_to_the_stream_and_the_jobs_history(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        log = store.event_log
        assert (await store.claim_submit(job_id)).claimed
        steps = [
            (JobStatus.SUBMITTED, "fal_accepted"),
            (JobStatus.IN_PROGRESS, "fal_status"),
            (JobStatus.COMPLETED, "webhook"),
        ]
        previous = JobStatus.SUBMITTING
        for to, reason in steps:
            before = len(await log.read_events())
            moved = await store.transition(job_id, to, reason=reason)
            assert moved.applied and moved.previous is previous

            new = (await log.read_events())[before:]
            job = await store.get(job_id)
            assert job is not None
            assert len(new) == 1
            [event] = new
            assert event.id == moved.event_id
            assert (event.job_id, event.tenant, event.endpoint) == (
                job_id,
                "tenant-a",
                "fal-ai/veo3.1/fast/image-to-video",
            )
            assert (event.from_status, event.to_status, event.reason) == (previous, to, reason)
            assert event.at_ms == job.updated_at_ms
            assert (await log.read_job_events(job_id))[-1] == event
            previous = to

        history = await log.read_job_events(job_id)
        assert [(e.from_status, e.to_status, e.reason) for e in history] == [
            (None, JobStatus.QUEUED, "created"),
            (JobStatus.QUEUED, JobStatus.SUBMITTING, "submit"),
            (JobStatus.SUBMITTING, JobStatus.SUBMITTED, "fal_accepted"),
            (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS, "fal_status"),
            (JobStatus.IN_PROGRESS, JobStatus.COMPLETED, "webhook"),
        ]
        assert history == await log.read_events(), "the same entries, under the same ids"

    run_with_store(redis_server.url, scenario)


def test_a_step_enqueues_every_follow_up_task_with_the_move(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store, callback_url="https://example.com/hook")
        await bring_to(store, job_id, JobStatus.SUBMITTED)
        redis, keys = store.redis, store.keys
        follow_ups = [
            Task(f"notify:{job_id}", "notify_job", (job_id,), only_if_set="callback_url"),
            Task(f"mirror:{job_id}", "mirror_job", (job_id, "s3"), defer_s=30.0),
            Task(f"lease:{job_id}", "release_lease", (job_id,), only_if_set="no_such_field"),
        ]
        started_ms = now_ms()

        moved = await store.transition(
            job_id, JobStatus.COMPLETED, reason="webhook", follow_ups=follow_ups
        )

        assert moved.applied
        queued = dict(await redis.zrange(keys.queue, 0, -1, withscores=True))
        assert queued[f"notify:{job_id}".encode()] >= started_ms
        assert queued[f"mirror:{job_id}".encode()] >= started_ms + 30_000
        assert f"lease:{job_id}".encode() not in queued, "its job field is not set"
        notify = deserialize_job(
            await redis.get(keys.arq_job(f"notify:{job_id}")), deserializer=tasks.deserialize
        )
        mirror = deserialize_job(
            await redis.get(keys.arq_job(f"mirror:{job_id}")), deserializer=tasks.deserialize
        )
        assert (notify.function, notify.args) == ("notify_job", (job_id,))
        assert (mirror.function, mirror.args) == ("mirror_job", (job_id, "s3"))
        assert not await redis.exists(keys.arq_job(f"lease:{job_id}"))

    run_with_store(redis_server.url, scenario)


def test_a_task_already_queued_is_not_enqueued_again(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        queued_before = await store.redis.zscore(store.keys.queue, job_id)

        await store.update_fields(
            job_id, {"note": "x"}, follow_ups=[Task(job_id, "dispatch_job", (job_id,), 60.0)]
        )

        assert await store.redis.zscore(store.keys.queue, job_id) == queued_before

    run_with_store(redis_server.url, scenario)


def test_a_failed_guard_refuses_the_move_and_appends_no_event(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        before = await snapshot(store, job_id)

        moved = await store.transition(
            job_id, JobStatus.SUBMITTING, reason="resubmit", guard=("submit_attempts", "7")
        )

        assert (moved.applied, moved.previous) == (False, JobStatus.QUEUED)
        assert await snapshot(store, job_id) == before

    run_with_store(redis_server.url, scenario)


def test_update_fields_writes_without_a_status_change_or_an_event(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        await bring_to(store, job_id, JobStatus.COMPLETED)
        job_before = await store.get(job_id)
        events_before = await store.event_log.read_events()

        status = await store.update_fields(
            job_id, {"callback_status": "delivered", "callback_attempts": 1}
        )

        job = await store.get(job_id)
        assert status is JobStatus.COMPLETED
        assert job is not None and job_before is not None
        assert (job.callback_status, job.callback_attempts) == ("delivered", 1)
        assert (job.status, job.updated_at_ms) == (job_before.status, job_before.updated_at_ms)
        assert await store.event_log.read_events() == events_before

    run_with_store(redis_server.url, scenario)


def test_no_write_of_either_kind_creates_a_missing_job(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = "job_missing"
        assert await store.update_fields(job_id, {"callback_status": "delivered"}) is None
        moved = await store.transition(job_id, JobStatus.COMPLETED, reason="webhook")
        assert (moved.applied, moved.previous) == (False, None)
        assert not (await store.claim_submit(job_id)).claimed
        assert not await store.redis.exists(store.keys.job(job_id))
        assert await store.event_log.read_events() == []

    run_with_store(redis_server.url, scenario)


def test_a_finished_job_and_its_history_expire_together(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        await store.transition(job_id, JobStatus.SUBMITTING, reason="submit")

        await store.transition(job_id, JobStatus.CANCELLED, reason="cancel", finished=True)

        # The history is a field of the job's hash: it has no key, nor a TTL, of its own.
        assert len(await store.event_log.read_job_events(job_id)) == 3
        assert not await store.redis.exists(store.keys.job_transitions(job_id))
        assert 0 < await store.redis.ttl(store.keys.job(job_id)) <= store.job_retention_s

    run_with_store(redis_server.url, scenario)


def test_a_job_of_the_previous_version_and_its_own_stream_expire_together(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await legacy_job(store)
        await store.transition(job_id, JobStatus.SUBMITTING, reason="submit")
        assert await store.redis.ttl(store.keys.job_transitions(job_id)) == -1

        await store.transition(job_id, JobStatus.CANCELLED, reason="cancel", finished=True)

        for key in (store.keys.job(job_id), store.keys.job_transitions(job_id)):
            assert 0 < await store.redis.ttl(key) <= store.job_retention_s

    run_with_store(redis_server.url, scenario)


def test_an_active_job_has_a_ttl_and_a_deadline_and_leaves_the_index_when_it_ends(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(store)
        assert (
            0
            < await store.redis.ttl(store.keys.job(job_id))
            <= (store.job_deadline_s + store.job_retention_s)
        )
        deadline = await store.deadline_ms(job_id)
        assert deadline is not None and deadline > now_ms() + (store.job_deadline_s - 60) * 1000
        await store.transition(job_id, JobStatus.FAILED, reason="test", finished=True)
        assert await store.deadline_ms(job_id) is None

    run_with_store(redis_server.url, scenario)


def test_a_lost_task_is_enqueued_again_and_a_queued_one_is_left_alone(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        task = Task("reconcile:job_x", "fetch_result", ("job_x",))
        assert await store.ensure_task(task), "never enqueued: enqueue it"
        assert not await store.ensure_task(task), "queued: leave it"
        # ARQ ended it without a retry (a result, no job key): free the id and run it again.
        await store.redis.delete(store.keys.arq_job(task.task_id))
        await store.redis.set(store.keys.arq_result(task.task_id), b"failed")
        assert await store.ensure_task(task)
        assert not await store.redis.exists(store.keys.arq_result(task.task_id))

    run_with_store(redis_server.url, scenario)


def test_a_polling_tasks_arq_key_outlives_arqs_one_day_default() -> None:
    week_s = 7 * 86_400.0
    task = Task("reconcile:job_x", "fetch_result", ("job_x",), defer_s=10, expires_s=week_s)
    assert task.expiry_ms() == int((week_s + 10) * 1000)
    assert Task("t", "f", ()).expiry_ms() == 86_400_000
