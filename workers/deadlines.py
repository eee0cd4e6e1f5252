"""sweep_jobs: every job ends within JOB_DEADLINE_S, even if every task meant to end it is lost.

ARQ can lose a task: its job key expires (set once at enqueue, not refreshed on Retry), a
failure that is not a Retry (max tries, a timeout before our own) ends it with the job still
active, a Redis restarted from an older AOF forgets it. So a cron job in every worker (ARQ runs
each tick once across workers) walks the `{prefix}active` index, which the create and
terminal steps maintain atomically:

- a job past its deadline is asked about at fal once more (a finished request is fetched as
  usual) and otherwise failed with `error.type = deadline_exceeded`;
- a younger job whose next task is neither queued nor running gets it enqueued again;
- a callback delivery whose next attempt is overdue (its task dropped by ARQ, expired or
  lost) gets that attempt's task enqueued again (service/deliveries.py);
- inputs still listed to move to the media store well after they were due (the keep_inputs
  task ended just as they were listed, or was lost) get that task enqueued again.
"""

from __future__ import annotations

import logging
from typing import Any

from service.completions import FalOutcome, finish_job
from service.fal import FalError
from service.input_archive import keep_inputs_task
from service.jobs import JobStatus, dispatch_task_id, settle_task_id
from service.store import ActiveState, Task, now_ms
from workers.context import WorkerContext, worker_context
from workers.dispatch import probe_task, reconcile_task
from workers.results import end_past_deadline, request_urls

logger = logging.getLogger("vidhook.deadlines")

# Jobs looked at per sweep, overdue ones (oldest first) and others for lost tasks; the others
# are paged with a cursor kept in Redis, so successive sweeps cover every active job.
SWEEP_BATCH = 2000
# A step that just moved a job may not have let go of its task yet: leave younger changes be.
SETTLING_MS = 120_000
# A delivery's attempt, or the keep_inputs task for a listed input, is normally picked up
# within a poll; one this late was lost (or the workers are saturated, and then enqueuing it
# again is a no-op).
PICKUP_SETTLING_MS = 3_000


async def sweep_jobs(ctx: dict[str, Any], *, batch: int = SWEEP_BATCH) -> str:
    """End overdue jobs and re-enqueue lost tasks; returns a summary."""
    w = worker_context(ctx)
    at_ms = now_ms()
    # Ended jobs leave the index, so the next sweep's first page is the next overdue ones.
    overdue = await w.store.overdue_jobs(at_ms, limit=batch)
    for job_id in overdue:
        await _end_overdue(w, job_id)
    recovered = 0
    if await w.budgets.paused() is not None and await w.store.ensure_task(probe_task(w)):
        recovered += 1
        logger.warning("dispatch paused with no probe queued: re-enqueued it")
    page = await w.store.next_active_page(after_deadline_ms=at_ms, limit=batch)
    for job_id, job in zip(page, await w.store.active_states(page), strict=True):
        if job is None or job.status.is_terminal:
            await w.store.forget_active(job_id)
            continue
        task = _next_task(w, job)
        settled = at_ms - job.updated_at_ms > SETTLING_MS
        if task is not None and settled and await w.store.ensure_task(task):
            recovered += 1
            logger.warning("%s (%s): re-enqueued lost task %s", job_id, job.status, task.task_id)
    resumed = await _resume_deliveries(w, at_ms)
    recovered += await _resume_keeping_inputs(w, at_ms)
    return (
        f"ended {len(overdue)} overdue, recovered {recovered} lost tasks, "
        f"resumed {resumed} callback deliveries"
    )


async def _resume_deliveries(w: WorkerContext, at_ms: int) -> int:
    """Enqueue the due attempt of every delivery overdue by PICKUP_SETTLING_MS."""
    resumed = 0
    for job_id, event in await w.deliveries.overdue(at_ms - PICKUP_SETTLING_MS):
        task = await w.deliveries.current_task(job_id, event)
        # ensure_task leaves a queued or running task be; a stale one that runs changes nothing.
        if task is not None and await w.store.ensure_task(task):
            resumed += 1
            logger.warning("%s: re-enqueued lost callback attempt %s", job_id, task.task_id)
    return resumed


async def _resume_keeping_inputs(w: WorkerContext, at_ms: int) -> int:
    """1 if inputs wait past their time with no keep_inputs task to move them, and it was
    enqueued again."""
    late = await w.store.redis.zcount(
        w.store.keys.inputs_to_keep, "-inf", at_ms - PICKUP_SETTLING_MS
    )
    if not late:
        return 0
    if not await w.store.ensure_task(keep_inputs_task(w.store.keys)):
        return 0
    logger.warning("%d inputs waited with no keep_inputs task queued: re-enqueued it", late)
    return 1


def _next_task(w: WorkerContext, job: ActiveState) -> Task | None:
    """The task that moves `job` on from where it is."""
    if job.status is JobStatus.QUEUED and job.parked:
        return None  # waiting in line: a release or the resume admits it
    if job.status is JobStatus.QUEUED or (
        job.status is JobStatus.SUBMITTING and job.submit_pending_since_ms is None
    ):
        return Task(dispatch_task_id(job.id), "dispatch_job", (job.id,))
    if job.status is JobStatus.SUBMITTING:
        return Task(
            settle_task_id(job.id), "settle_submit", (job.id,), expires_s=w.settings.job_deadline_s
        )
    if job.status in (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS):
        return reconcile_task(w, job.id, defer_s=0.0)
    return None


async def _end_overdue(w: WorkerContext, job_id: str) -> None:
    job = await w.store.get(job_id)
    if job is None or job.status.is_terminal:
        await w.store.forget_active(job_id)
        return
    last_word = "fal never named a request for it"
    status_url, response_url = request_urls(w, job)
    if status_url is not None and response_url is not None:
        # One last word from fal: a request that finished is recorded as usual.
        try:
            state = (await w.fal.status(status_url)).get("status")
            if state == "COMPLETED":
                result = await w.fal.result(response_url)
                if result.ok:
                    outcome = FalOutcome(job.fal_request_id, result=result.body)
                    await finish_job(w.store, job_id, outcome, source="deadline_check")
                    return
            last_word = f"fal said {state}"
        except FalError as exc:
            last_word = f"fal could not say ({exc})"
    await end_past_deadline(w, job, last_word)
