"""finish_job on the transition step: one event for the first outcome, none for later ones."""

from __future__ import annotations

from service.completions import FalOutcome, fal_error, finish_job
from service.deliveries import attempt_task_id, due_member
from service.dev.localredis import LocalRedis
from service.jobs import JobStatus, fetch_result_task_id
from service.store import JobStore
from tests.support.jobstores import new_job, run_with_store


async def submitted(store: JobStore) -> str:
    job_id = await new_job(store, callback_url="https://example.com/hook")
    assert (await store.claim_submit(job_id)).claimed
    assert (await store.transition(job_id, JobStatus.SUBMITTED, reason="fal_accepted")).applied
    return job_id


def test_the_first_outcome_is_one_event_and_a_late_one_is_none(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await submitted(store)
        first = await finish_job(store, job_id, FalOutcome("req-1", result={}), source="webhook")
        late = await finish_job(
            store, job_id, FalOutcome("req-1", error={"type": "x"}), source="result"
        )

        assert first.applied and not late.applied
        events = await store.event_log.read_job_events(job_id)
        assert [(e.to_status, e.reason) for e in events[-1:]] == [(JobStatus.COMPLETED, "webhook")]
        assert len(events) == 4
        # Its callback delivery started in the same step: the task, and the due mark the
        # sweep reads should that task be lost. Only the terminal event: the default.
        first_try = attempt_task_id(job_id, "job.completed", 0, 0)
        assert await store.redis.exists(store.keys.arq_job(first_try))
        assert await store.redis.zrange(store.keys.deliveries_due, 0, -1) == [
            due_member(job_id, "job.completed").encode()
        ]

    run_with_store(redis_server.url, scenario)


def test_a_result_to_fetch_for_a_running_job_is_fetched_without_an_event(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await submitted(store)
        needs_fetch = FalOutcome("req-1", needs_fetch=True)
        moved = await finish_job(store, job_id, needs_fetch, source="webhook")
        assert moved.applied
        fetch_key = store.keys.arq_job(fetch_result_task_id(job_id))
        await store.redis.delete(fetch_key)  # as if the fetch already ran and ended
        events_before = await store.event_log.read_job_events(job_id)

        again = await finish_job(store, job_id, needs_fetch, source="webhook")

        assert (again.applied, again.previous) == (False, JobStatus.IN_PROGRESS)
        assert await store.event_log.read_job_events(job_id) == events_before
        assert await store.redis.exists(fetch_key), "the result is still fetched"
        assert events_before[-1].reason == "webhook_payload_error"

    run_with_store(redis_server.url, scenario)


def test_a_late_ok_for_a_job_vidhook_failed_itself_completes_it_and_tells_the_client(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await submitted(store)
        own = fal_error("dispatch_failed", "gave up submitting to fal: timeout")
        assert (
            await finish_job(store, job_id, FalOutcome(None, error=own), source="dispatch")
        ).applied

        late = FalOutcome("req-1", result={"video": {"url": "https://v3.fal.media/out.mp4"}})
        moved = await finish_job(store, job_id, late, source="webhook")

        assert (moved.applied, moved.previous) == (True, JobStatus.FAILED)
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        resource = job.to_resource()
        assert resource["result"] == late.result
        assert resource["superseded"] == {"status": "failed", "error": own}
        notes = [note["event"] for note in await store.events(job_id)]
        assert notes == ["late_outcome", "own_failure_revised"], "both outcomes are recorded"
        events = await store.event_log.read_job_events(job_id)
        assert [(e.from_status, e.to_status) for e in events[-2:]] == [
            (JobStatus.SUBMITTED, JobStatus.FAILED),
            (JobStatus.FAILED, JobStatus.COMPLETED),
        ]
        # A callback of its own, so the client learns the job completed after all.
        first_try = attempt_task_id(job_id, "job.completed", 0, 0)
        assert await store.redis.exists(store.keys.arq_job(first_try))
        assert await store.redis.exists(
            store.keys.arq_job(attempt_task_id(job_id, "job.failed", 0, 0))
        )
        # And that is final: nothing revises a completed job.
        again = await finish_job(store, job_id, FalOutcome(None, error=own), source="dispatch")
        assert not again.applied

    run_with_store(redis_server.url, scenario)


def test_a_failure_fal_reported_is_never_revised_by_a_later_ok(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await submitted(store)
        fals = fal_error("fal_request_failed", "Invalid status code: 422")
        await finish_job(store, job_id, FalOutcome("req-1", error=fals), source="webhook")

        moved = await finish_job(store, job_id, FalOutcome("req-1", result={}), source="result")

        assert (moved.applied, moved.previous) == (False, JobStatus.FAILED)
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED and job.error == fals

    run_with_store(redis_server.url, scenario)


def test_only_the_selected_events_start_a_delivery_in_their_step(
    redis_server: LocalRedis,
) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await new_job(
            store,
            callback_url="https://example.com/hook",
            callback_events="job.submitted job.completed",
        )
        assert (await store.claim_submit(job_id)).claimed
        await store.transition(job_id, JobStatus.SUBMITTED, reason="fal_accepted")
        await store.transition(job_id, JobStatus.IN_PROGRESS, reason="fal_status")
        await finish_job(store, job_id, FalOutcome("req-1", result={}), source="webhook")

        due = await store.redis.zrange(store.keys.deliveries_due, 0, -1)
        assert sorted(due) == sorted(
            due_member(job_id, event).encode() for event in ("job.submitted", "job.completed")
        )
        for event, expected in (
            ("job.submitted", 1),
            ("job.in_progress", 0),
            ("job.completed", 1),
        ):
            task_key = store.keys.arq_job(attempt_task_id(job_id, event, 0, 0))
            assert await store.redis.exists(task_key) == expected, event

    run_with_store(redis_server.url, scenario)


def test_a_job_without_a_callback_url_starts_no_delivery(redis_server: LocalRedis) -> None:
    async def scenario(store: JobStore) -> None:
        job_id = await submitted_without_callback(store)
        await finish_job(store, job_id, FalOutcome("req-1", result={}), source="webhook")
        assert await store.redis.zcard(store.keys.deliveries_due) == 0

    run_with_store(redis_server.url, scenario)


async def submitted_without_callback(store: JobStore) -> str:
    job_id = await new_job(store)
    assert (await store.claim_submit(job_id)).claimed
    assert (await store.transition(job_id, JobStatus.SUBMITTED, reason="fal_accepted")).applied
    return job_id
