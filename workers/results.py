"""fetch_result: ask fal directly about a request, and finish the job from its answer.

Runs in two cases. fal's webhook said the request finished but could not carry the result
(`payload_error`). Or no webhook came: at submit a reconcile task is scheduled for
RECONCILE_AFTER_S later, so a lost webhook never means a lost video. Either way it follows
fal's clients: status first, the result only once the status says COMPLETED.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from service import metrics
from service.completions import FalOutcome, fal_error, finish_job, outcome_from_error
from service.fal import FalError, FalRejected
from service.jobs import Job, JobStatus
from service.store import now_ms
from workers.context import WorkerContext, worker_context

logger = logging.getLogger("vidhook.results")

# fal answering 404/400/422 for a request this many times in a row means it does not know it;
# any other answer in between starts the count again (a running job survives one bad answer).
UNKNOWN_REQUEST_TRIES = 5


def _owner_app(endpoint: str) -> str:
    return "/".join(endpoint.split("/")[:2])


def request_urls(w: WorkerContext, job: Job) -> tuple[str | None, str | None]:
    """The request's status and result URLs: as fal returned them, or fal's documented form."""
    if job.fal_request_id is None:
        return job.fal_status_url, job.fal_response_url
    base = str(w.settings.fal_queue_base_url).rstrip("/")
    response_url = f"{base}/{_owner_app(job.endpoint)}/requests/{job.fal_request_id}"
    return (
        job.fal_status_url or f"{response_url}/status",
        job.fal_response_url or response_url,
    )


def next_poll_s(w: WorkerContext, job_try: int) -> float:
    """The wait before the next status poll: poll mode's back-off (FAL_POLL_INTERVAL_S up to
    FAL_POLL_MAX_INTERVAL_S) when fal will send no webhook, the retry back-off otherwise."""
    return w.poll_delay_s(job_try) if w.settings.poll_mode else w.backoff_s(job_try)


async def fetch_result(ctx: dict[str, Any], job_id: str) -> str:
    """Finish the job from fal's status and result; Retry while it runs or fal is unreachable.

    A request fal keeps in its queue or running is polled for as long as it takes (each poll
    backs off up to RETRY_MAX_DELAY_S); only a request fal repeatedly says it does not know
    fails the job.
    """
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    job = await w.store.get(job_id)
    if job is None or job.status.is_terminal:
        metrics.RECONCILER_ACTIONS.labels("idle").inc()
        return "nothing to fetch"
    status_url, response_url = request_urls(w, job)
    if status_url is None or response_url is None:
        return "no fal request to ask about"
    try:
        state = (await w.fal.status(status_url)).get("status")
        if job.unknown_request_streak:
            await w.store.update_fields(job_id, {"unknown_request_streak": 0})
        if state != "COMPLETED":
            if state == "IN_PROGRESS":
                # Refused by the table when it is in_progress already: no event per poll.
                await w.store.transition(job_id, JobStatus.IN_PROGRESS, reason="fal_status")
            deadline_ms = await w.store.deadline_ms(job_id)
            if deadline_ms is not None and now_ms() >= deadline_ms:
                return await end_past_deadline(w, job, f"fal still says {state}")
            metrics.RECONCILER_ACTIONS.labels("polling").inc()
            raise Retry(defer=next_poll_s(w, job_try))
        result = await w.fal.result(response_url)
    except FalRejected as exc:
        streak = job.unknown_request_streak + 1
        if streak < UNKNOWN_REQUEST_TRIES:
            await w.store.update_fields(job_id, {"unknown_request_streak": streak})
            raise Retry(defer=w.backoff_s(job_try)) from exc
        metrics.RECONCILER_ACTIONS.labels("unknown").inc()
        logger.warning("fal does not know request %s of %s: %s", job.fal_request_id, job_id, exc)
        error = fal_error("fal_request_unknown", f"fal does not know the request: {exc}")
        await finish_job(
            w.store, job_id, FalOutcome(job.fal_request_id, error=error), source="status"
        )
        return "unknown to fal"
    except FalError as exc:
        raise Retry(defer=next_poll_s(w, job_try)) from exc
    if result.ok:
        outcome = FalOutcome(request_id=job.fal_request_id, result=result.body)
    else:
        message = f"fal answered {result.status_code} for the result"
        outcome = outcome_from_error(job.fal_request_id, message, result.body)
    moved = await finish_job(
        w.store, job_id, outcome, source="result", mirror_outputs=w.settings.media_mirror
    )
    reconciled = moved.applied and job.status is not JobStatus.IN_PROGRESS
    metrics.RECONCILER_ACTIONS.labels("reconciled" if reconciled else "fetched").inc()
    if reconciled:
        logger.info(
            "reconcile.recovered",
            extra={"job_id": job_id, "fal_request_id": job.fal_request_id, "tenant": job.tenant},
        )
    return "fetched"


async def end_past_deadline(w: WorkerContext, job: Job, last_word: str) -> str:
    """Fail a job that outlived JOB_DEADLINE_S (vidhook's own failure: fal's result still wins)."""
    message = (
        f"not finished within JOB_DEADLINE_S ({w.settings.job_deadline_s} s) of its creation; "
        f"{last_word}"
    )
    logger.warning("%s: %s", job.id, message)
    await finish_job(
        w.store,
        job.id,
        FalOutcome(job.fal_request_id, error=fal_error("deadline_exceeded", message)),
        source="deadline",
    )
    return "deadline exceeded"
