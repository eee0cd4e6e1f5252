"""dispatch_job: submit a queued job to fal, once.

Safe to run twice or after a crash: a job that has left `queued`/`submitting` is left alone,
and a submit that may have reached fal (timeout, crash mid-POST) is not resent until the grace
period for its webhook has passed — resending would pay twice.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from arq import Retry

from service import metrics
from service.completions import FalOutcome, fal_error, finish_job
from service.fal import FalAmbiguous, FalError, FalRejected, FalUnavailable
from service.jobs import JobStatus, reconcile_task_id, sources_of
from service.store import SubmitClaim, Task, now_ms
from workers.context import WorkerContext, worker_context

logger = logging.getLogger("vidhook.dispatch")

# The statuses a submit may start from, as the transition table has them.
DISPATCHABLE = sources_of(JobStatus.SUBMITTING)


async def dispatch_job(ctx: dict[str, Any], job_id: str) -> str:
    """Submit job `job_id` to fal; returns what happened, raises Retry to try again later."""
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    last_try = job_try >= w.settings.dispatch_max_tries
    # The common case in one round trip: claim the submit and read what it needs.
    claim = await w.store.claim_submit(job_id)
    if claim.unclear:
        careful = await _claim_after_unclear_submit(w, job_id, last_try)
        if isinstance(careful, str):
            return careful
        claim = careful
    if not claim.claimed:
        return f"skipped: {claim.status.value if claim.status else 'missing'}"

    webhook_url = w.settings.fal_webhook_url(job_id)
    started = time.perf_counter()
    try:
        # The input as stored at intake: the JSON fal gets, with no decode and re-encode.
        receipt = await w.fal.submit(claim.endpoint, claim.input_json, webhook_url=webhook_url)
    except FalError as exc:
        _count_submit(_OUTCOME_CLASS.get(type(exc), "error"), started)
        return await _submit_failed(ctx, w, job_id, exc, last_try)
    duration_s = _count_submit("accepted", started)
    accepted_fields: dict[str, str | int] = {
        "fal_request_id": receipt.request_id,
        "fal_status_url": receipt.status_url,
        "fal_response_url": receipt.response_url,
        "fal_cancel_url": receipt.cancel_url,
        "submitted_at_ms": now_ms(),
        "submit_pending_since_ms": "",
    }
    moved = await w.store.transition(
        job_id,
        JobStatus.SUBMITTED,
        reason="fal_accepted",
        fields=accepted_fields,
        # Scheduled in the same step, so no submitted job is left without a safety net.
        follow_ups=[
            Task(
                reconcile_task_id(job_id),
                "fetch_result",
                (job_id,),
                defer_s=w.settings.reconcile_after_s,
            )
        ],
    )
    if moved.applied:
        await metrics.job_submitted(w.store.redis, w.store.keys, job_id, now_ms())
    else:
        # fal's webhook can beat its own submit answer here (a fast failure): keep the finished
        # state, but remember which request it was.
        await w.store.update_fields(job_id, accepted_fields)
    logger.info(
        "job.submitted",
        extra={"job_id": job_id, "fal_request_id": receipt.request_id, "duration_s": duration_s},
    )
    return f"submitted as {receipt.request_id}"


_OUTCOME_CLASS: dict[type[FalError], str] = {
    FalRejected: "rejected",
    FalUnavailable: "unavailable",
    FalAmbiguous: "ambiguous",
}


def _count_submit(outcome: str, started: float) -> float:
    duration_s = round(time.perf_counter() - started, 6)
    metrics.FAL_SUBMIT_SECONDS.labels(outcome).observe(duration_s)
    metrics.FAL_SUBMITS.labels(outcome).inc()
    return duration_s


async def _submit_failed(
    ctx: dict[str, Any], w: WorkerContext, job_id: str, exc: FalError, last_try: bool
) -> str:
    """What a refused, failed or unclear submit leads to: the end, a retry, or a wait."""
    if isinstance(exc, FalRejected):
        await finish_job(
            w.store,
            job_id,
            FalOutcome(request_id=None, error=fal_error("fal_rejected", str(exc), exc.detail)),
            source="submit",
        )
        return "rejected by fal"
    if isinstance(exc, FalUnavailable):
        # Nothing was accepted, so the next try may submit straight away.
        await w.store.update_fields(job_id, {"submit_pending_since_ms": ""})
        return await _retry_or_fail(ctx, job_id, str(exc), exc.retry_after_s, last_try)
    logger.warning("fal_submit.unclear", extra={"job_id": job_id, "error": str(exc)})
    return await _retry_or_fail(
        ctx, job_id, str(exc), w.settings.ambiguous_submit_grace_s, last_try
    )


async def _claim_after_unclear_submit(
    w: WorkerContext, job_id: str, last_try: bool
) -> SubmitClaim | str:
    """An earlier try sent the POST and never learned the answer: claim only after the grace.

    If fal accepted that submit, its webhook moves the job on; give it the grace period
    before paying for a second one. Returns the claim, or what happened instead; raises
    Retry while the grace period lasts.
    """
    job = await w.store.get(job_id)
    if job is None or job.status not in DISPATCHABLE:
        return f"skipped: {job.status.value if job else 'missing'}"
    reason = "submit"
    if job.submit_pending_since_ms is not None:
        reason = "resubmit"
        waited_s = (now_ms() - job.submit_pending_since_ms) / 1000
        remaining_s = w.settings.ambiguous_submit_grace_s - waited_s
        if remaining_s > 0 and not last_try:
            raise Retry(defer=remaining_s)
        await w.store.record_event(
            job_id, {"event": "resubmit", "waited_s": round(waited_s, 1)}, counter="resubmits"
        )
        metrics.DUPLICATE_SUBMITS.inc()
        logger.warning(
            "fal_submit.resubmit",
            extra={"job_id": job_id, "waited_s": round(waited_s, 1)},
        )
    # Only one claimant can move the attempt counter on from what it read.
    moved = await w.store.transition(
        job_id,
        JobStatus.SUBMITTING,
        reason=reason,
        fields={"submit_pending_since_ms": now_ms(), "submit_attempts": job.submit_attempts + 1},
        guard=("submit_attempts", str(job.submit_attempts)),
    )
    if not moved.applied:
        return f"skipped: {moved.previous}"
    return SubmitClaim(
        claimed=True,
        status=JobStatus.SUBMITTING,
        endpoint=job.endpoint,
        input_json=json.dumps(job.input, separators=(",", ":")).encode(),
    )


async def _retry_or_fail(
    ctx: dict[str, Any], job_id: str, reason: str, retry_after_s: float | None, last_try: bool
) -> str:
    w = worker_context(ctx)
    if last_try:
        await finish_job(
            w.store,
            job_id,
            FalOutcome(
                request_id=None,
                error=fal_error("dispatch_failed", f"gave up submitting to fal: {reason}"),
            ),
            source="dispatch",
        )
        return "gave up"
    delay_s = max(retry_after_s or 0.0, w.backoff_s(ctx.get("job_try", 1)))
    logger.info(
        "job.dispatch_retry",
        extra={"job_id": job_id, "delay_s": round(delay_s, 3), "reason": reason},
    )
    raise Retry(defer=delay_s)
