"""What an operator does to jobs from the command line: retry, redeliver a callback.

(Cancelling is `service.cancellation.cancel_job`, the same as the API's.) Each action is a
store step of its own, as the workers' are; each answers with a sentence saying what it did
or why it did nothing.

Terminal jobs never change state again (their input is dropped when they finish), so
`retry` kicks the next step of an active job instead: a queued job is dispatched again, a
submitted one is asked about at fal now.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.deliveries import Deliveries
from service.domain_errors import NothingToRedeliver
from service.jobs import JobStatus, dispatch_task_id, fetch_result_task_id
from service.store import JobStore, Task


@dataclass(frozen=True, slots=True)
class Done:
    ok: bool
    message: str


async def _requeue(store: JobStore, job_id: str, task: Task) -> bool:
    """Enqueue `task` for the job unless that task is queued or running already."""
    # ARQ refuses a task id that is queued or has a result: a finished earlier run's result
    # is dropped so the id can be used again; a queued or running one is left alone.
    if await store.redis.exists(store.keys.arq_job(task.task_id)):
        return False
    await store.redis.delete(store.keys.arq_result(task.task_id))
    return await store.update_fields(job_id, {}, follow_ups=[task]) is not None


async def retry(store: JobStore, job_id: str) -> Done:
    """Run an active job's next step again: dispatch (queued) or a fal status check."""
    job = await store.get(job_id)
    if job is None:
        return Done(False, f"no job {job_id}")
    if job.status in (JobStatus.QUEUED, JobStatus.SUBMITTING):
        task = Task(dispatch_task_id(job_id), "dispatch_job", (job_id,))
    elif job.status in (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS):
        task = Task(fetch_result_task_id(job_id), "fetch_result", (job_id,))
    else:
        return Done(False, f"{job_id} is {job.status.value}: a finished job is not run again")
    if not await _requeue(store, job_id, task):
        return Done(False, f"{job_id}: {task.function} is already queued or the job moved on")
    return Done(True, f"{job_id}: {task.function} queued")


async def redeliver_callback(store: JobStore, job_id: str) -> Done:
    """Send a job's finished callback deliveries again (same webhook-id and body), as
    `POST /v1/jobs/{id}/callback/redeliver` does: the dead-lettered ones, or the latest."""
    job = await store.get(job_id)
    if job is None:
        return Done(False, f"no job {job_id}")
    if job.callback_url is None:
        return Done(False, f"{job_id} has no callback to redeliver ({job.status.value})")
    # The schedule is the workers' business; only the record's lifetime matters here, and a
    # worker refreshes it with its own at the first attempt.
    store_of_deliveries = Deliveries(
        store.redis, store.keys, schedule_s=(0.0,), retention_s=store.job_retention_s + 7 * 86_400
    )
    try:
        started = await store_of_deliveries.redeliver(job_id)
    except NothingToRedeliver as exc:
        return Done(False, str(exc))
    await store.update_fields(
        job_id, {"callback_status": "pending", "callback_attempts": 0, "callback_last_error": ""}
    )
    events = ", ".join(delivery.event for delivery in started)
    return Done(True, f"{job_id}: callback queued for redelivery ({events})")
