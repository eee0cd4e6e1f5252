"""dispatch_job: submit a queued job to fal, once.

Safe to run twice or after a crash: a job that has left `queued`/`submitting` is left alone,
and a submit that may have reached fal (timeout, 5xx after sending, crash mid-POST) is never
resent from here: it is handed to `workers/settle.py`, which looks for the request in fal's
listing and resends only when fal shows none within the endpoint's grace. Resending blindly
would pay twice.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from arq import Retry

from service import metrics
from service.budgets import DEFAULT_SLOW_DOWN_S, PROBE_TASK_NAME, WAKE_TASK_NAME
from service.completions import FalOutcome, fal_error, finish_job
from service.fal import AUTH_REFUSALS, FalAmbiguous, FalRejected, FalUnavailable, SubmitReceipt
from service.input_archive import keep_input_task
from service.jobs import (
    JobStatus,
    fal_request_fields,
    reconcile_task_id,
    settle_task_id,
    sources_of,
)
from service.store import Task, now_ms
from workers.context import WorkerContext, worker_context

logger = logging.getLogger("vidhook.dispatch")

# The statuses a submit may start from, as the transition table has them.
DISPATCHABLE = sources_of(JobStatus.SUBMITTING)
LOST_MID_SUBMIT = "a worker was lost while its submit was in flight"


async def dispatch_job(ctx: dict[str, Any], job_id: str) -> str:
    """Submit job `job_id` to fal; returns what happened, raises Retry to try again later."""
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    last_try = job_try >= w.settings.dispatch_max_tries
    # The common case in one round trip: claim the submit and read what it needs.
    claim = await w.store.claim_submit(job_id)
    if claim.waiting:
        # No slot (or dispatch is paused): the job is parked in its tenant's line, and the
        # release of a slot (or the resume) admits it with a task of its own. No spinning.
        return f"{claim.waiting}: parked"
    if claim.unclear:
        # An earlier try sent the POST and never learned the answer (its worker died).
        await settle_later(w, job_id, LOST_MID_SUBMIT, keep_cause=True)
        return "unclear earlier submit: settling"
    if not claim.claimed:
        return f"skipped: {claim.status.value if claim.status else 'missing'}"

    webhook_url = w.settings.fal_webhook_url(job_id)
    started = time.perf_counter()
    try:
        # The input as stored at intake: the JSON fal gets, with no decode and re-encode.
        receipt = await w.fal.submit(claim.endpoint, claim.input_json, webhook_url=webhook_url)
    except FalRejected as exc:
        _count_submit("rejected", started)
        # 400/422: fal's detail, at once. Nothing ran, so its spend is refunded.
        await finish_job(
            w.store,
            job_id,
            FalOutcome(request_id=None, error=fal_error("fal_rejected", str(exc), exc.detail)),
            source="submit",
            refund=True,
        )
        return "rejected by fal"
    except FalUnavailable as exc:
        _count_submit("unavailable", started)
        if exc.status_code in AUTH_REFUSALS:
            return await pause_for_key(w, job_id, exc)
        # Nothing was created, and claim_submit claims only with no earlier submit pending,
        # so this was the only one: the next try may submit straight away.
        await w.store.update_fields(job_id, {"submit_pending_since_ms": ""})
        if exc.status_code == 429:
            await slow_down(w, exc.retry_after_s)
        return await _retry_or_fail(ctx, job_id, str(exc), exc.retry_after_s, last_try)
    except FalAmbiguous as exc:
        # Never the end of the job, whichever try this is: fal may be rendering it.
        _count_submit("ambiguous", started)
        logger.warning("fal_submit.unclear", extra={"job_id": job_id, "error": str(exc)})
        await settle_later(w, job_id, str(exc))
        return "unclear submit: settling"
    _count_submit("accepted", started)
    return await record_acceptance(w, job_id, receipt)


async def pause_for_key(w: WorkerContext, job_id: str, exc: FalUnavailable) -> str:
    """fal refused our key (401/403): pause dispatch for everyone, put the job back in line.

    Every other job would be refused the same way; failing them one by one would turn a key
    rotation into an outage. The probe task resumes dispatch once fal takes the key again.
    """
    if await w.budgets.pause(f"fal refused our key: {exc}", exc.status_code, now_ms()):
        metrics.DISPATCH_PAUSES.inc()
        logger.error("dispatch.paused", extra={"job_id": job_id, "status": exc.status_code})
    await w.store.requeue_paused(job_id)
    await w.store.ensure_task(probe_task(w))
    return "paused: fal refused our key"


def probe_task(w: WorkerContext) -> Task:
    return Task(
        w.store.keys.singleton_task(PROBE_TASK_NAME),
        "probe_fal",
        (),
        defer_s=w.settings.fal_pause_probe_s,
    )


async def slow_down(w: WorkerContext, retry_after_s: float | None) -> None:
    """fal said 429: a smaller budget until Retry-After, then a wake-up admits what waited."""
    wait_s = retry_after_s or DEFAULT_SLOW_DOWN_S
    limit = await w.budgets.slow_down(wait_s)
    logger.warning("fal asked us to slow down: budget %d for %.1fs", limit, wait_s)
    await w.store.ensure_task(
        Task(w.store.keys.singleton_task(WAKE_TASK_NAME), "wake_dispatch", (), defer_s=wait_s)
    )


def _count_submit(outcome: str, started: float) -> float:
    duration_s = round(time.perf_counter() - started, 6)
    seconds, submits = _submit_metrics(outcome)
    seconds.observe(duration_s)
    submits.inc()
    return duration_s


@functools.cache
def _submit_metrics(outcome: str) -> tuple[Any, Any]:
    # Each outcome's series, looked up once: `labels()` takes a lock and checks its values on
    # every call, and every submit counts itself.
    return metrics.FAL_SUBMIT_SECONDS.labels(outcome), metrics.FAL_SUBMITS.labels(outcome)


async def settle_later(
    w: WorkerContext, job_id: str, cause: str, *, keep_cause: bool = False
) -> None:
    """Hand an unclear submit to settle_submit, noting its cause (`keep_cause`: unless one is
    noted already, as a crash retry knows less than the try that saw the timeout)."""
    fields: dict[str, str | int] = {}
    if not keep_cause:
        fields["submit_unclear_cause"] = cause
    else:
        job = await w.store.get(job_id)
        if job is not None and job.submit_unclear_cause is None:
            fields["submit_unclear_cause"] = cause
    await w.store.update_fields(
        job_id,
        fields,
        follow_ups=[
            Task(
                settle_task_id(job_id),
                "settle_submit",
                (job_id,),
                defer_s=w.settings.submit_lookup_interval_s,
                expires_s=w.settings.job_deadline_s,
            )
        ],
    )


async def record_acceptance(w: WorkerContext, job_id: str, receipt: SubmitReceipt) -> str:
    """fal answered a submit with its request: the job is submitted, its reconcile scheduled."""
    accepted_fields: dict[str, str | int] = {
        "fal_request_id": receipt.request_id,
        **fal_request_fields(receipt.status_url, receipt.response_url, receipt.cancel_url),
        "submitted_at_ms": now_ms(),
        "submit_pending_since_ms": "",
    }
    # fal has the input now: it moves to the media store (the job keeps its input_sha256 to
    # find the request by).
    keep = keep_input_task(w.store.keys, job_id)
    moved = await w.store.transition(
        job_id,
        JobStatus.SUBMITTED,
        reason="fal_accepted",
        fields=accepted_fields,
        # Scheduled in the same step, so no submitted job is left without a safety net.
        # In poll mode no webhook will come: the first poll is due soon.
        follow_ups=[reconcile_task(w, job_id, defer_s=first_check_s(w)), keep],
    )
    # Applied, the step itself counted the job in flight at fal (the `atfal` gauge).
    if not moved.applied:
        # fal's webhook can beat its own submit answer here (a fast failure): keep the finished
        # state, but remember which request it was.
        await w.store.update_fields(job_id, accepted_fields, follow_ups=[keep])
    return f"submitted as {receipt.request_id}"


def first_check_s(w: WorkerContext) -> float:
    """When a submitted job is first asked about at fal: soon in poll mode, else as a backstop."""
    if w.settings.poll_mode:
        return w.settings.fal_poll_interval_s
    return w.settings.reconcile_after_s


def reconcile_task(w: WorkerContext, job_id: str, *, defer_s: float) -> Task:
    """The task asking fal about the job's request; it polls for the job's whole life."""
    return Task(
        reconcile_task_id(job_id),
        "fetch_result",
        (job_id,),
        defer_s=defer_s,
        expires_s=w.settings.job_deadline_s,
    )


async def _retry_or_fail(
    ctx: dict[str, Any], job_id: str, reason: str, retry_after_s: float | None, last_try: bool
) -> str:
    w = worker_context(ctx)
    if last_try:
        # Only after definite refusals: no request exists that fal could still finish.
        await finish_job(
            w.store,
            job_id,
            FalOutcome(
                request_id=None,
                error=fal_error("dispatch_failed", f"gave up submitting to fal: {reason}"),
            ),
            source="dispatch",
            refund=True,
        )
        return "gave up"
    delay_s = max(retry_after_s or 0.0, w.backoff_s(ctx.get("job_try", 1)))
    logger.info("retrying %s in %.2fs: %s", job_id, delay_s, reason)
    raise Retry(defer=delay_s)
