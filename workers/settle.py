"""settle_submit: find out what became of a submit whose answer was lost, before paying again.

A submit is unclear when its POST was sent and no definite answer came back: a timeout, a
dropped connection, a 500/502/504 from fal's edge, or a worker that died mid-POST. fal may
have created the request. This task, repeated every SUBMIT_LOOKUP_INTERVAL_S:

1. asks fal's request listing (service/fal_platform.py) for a request on the job's endpoint,
   sent since the job was created, whose input hashes to the job's `input_sha256`; if there
   is one, the job adopts it (no resubmit) and its result is fetched;
2. otherwise waits, until the endpoint's grace (its completion time, from the catalog) has
   passed since the unclear submit: the listing shows finished requests only, so a request
   still rendering is invisible until then. fal's webhook names the job, so it settles the
   job meanwhile just as well;
3. only then resubmits, counted in `submissions.resubmits` with its cause in the job's notes.

It never fails the job: that is the deadline sweep's (workers/deadlines.py), past
JOB_DEADLINE_S.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from arq import Retry

from service import metrics
from service.catalog import get_endpoint
from service.completions import FalOutcome, fal_error, finish_job
from service.fal import FalAmbiguous, FalRejected, FalUnavailable
from service.fal_platform import ListedRequest
from service.input_archive import keep_input_task
from service.jobs import Job, JobStatus, fal_request_fields, input_sha256
from service.store import now_ms
from workers.context import WorkerContext, worker_context
from workers.dispatch import (
    DISPATCHABLE,
    LOST_MID_SUBMIT,
    first_check_s,
    reconcile_task,
    record_acceptance,
)

logger = logging.getLogger("vidhook.settle")

# fal's `sent_at` is fal's clock; look a little before the job's creation on ours.
CLOCK_SKEW_MS = 5 * 60 * 1000


async def settle_submit(ctx: dict[str, Any], job_id: str) -> str:
    """Adopt the request an unclear submit created, or resubmit after the grace; Retry between."""
    w = worker_context(ctx)
    job = await w.store.get(job_id)
    if job is None or job.status not in DISPATCHABLE or job.submit_pending_since_ms is None:
        return f"settled: {job.status.value if job else 'missing'}"
    interval_s = w.settings.submit_lookup_interval_s
    fingerprint = job.input_sha256 or input_sha256(job.input)
    try:
        found = await w.platform.find_request(
            job.endpoint, fingerprint, sent_after_ms=job.created_at_ms - CLOCK_SKEW_MS
        )
    except FalUnavailable as exc:
        # "Could not look" is not "not there": never resubmit on a failed lookup.
        logger.info("request listing unavailable for %s: %s", job_id, exc)
        raise Retry(defer=interval_s) from exc
    if found is not None:
        return await _adopt(w, job, found)
    waited_s = (now_ms() - job.submit_pending_since_ms) / 1000
    remaining_s = w.settings.submit_grace_s(job.endpoint) - waited_s
    if remaining_s > 0:
        raise Retry(defer=min(interval_s, remaining_s))
    return await _resubmit(ctx, w, job, waited_s)


def _request_urls(w: WorkerContext, job: Job, request_id: str) -> dict[str, str]:
    """fal's documented URL forms (owner/app only, fal-protocol §1.2) for an adopted request."""
    spec = get_endpoint(job.endpoint)
    app = spec.app_id if spec else "/".join(job.endpoint.split("/")[:2])
    base = f"{str(w.settings.fal_queue_base_url).rstrip('/')}/{app}/requests/{request_id}"
    return fal_request_fields(f"{base}/status", base, f"{base}/cancel")


async def _adopt(w: WorkerContext, job: Job, found: ListedRequest) -> str:
    later_s = first_check_s(w)
    await w.store.record_event(
        job.id,
        {
            "event": "adopted",
            "fal_request_id": found.request_id,
            "cause": job.submit_unclear_cause or LOST_MID_SUBMIT,
        },
    )
    moved = await w.store.transition(
        job.id,
        JobStatus.SUBMITTED,
        reason="fal_listing",
        fields={
            "fal_request_id": found.request_id,
            **_request_urls(w, job, found.request_id),
            "submitted_at_ms": now_ms(),
            "submit_pending_since_ms": "",
        },
        # Listed means finished (at least on the simulator): fetch its result now. fal has
        # the input: it moves to the media store.
        follow_ups=[
            reconcile_task(w, job.id, defer_s=0.0 if found.finished else later_s),
            keep_input_task(w.store.keys, job.id),
        ],
    )
    logger.info("%s: fal had created request %s for an unclear submit", job.id, found.request_id)
    return f"adopted {found.request_id}" if moved.applied else f"settled: {moved.previous}"


async def _resubmit(ctx: dict[str, Any], w: WorkerContext, job: Job, waited_s: float) -> str:
    if job.input is None:
        return "settled: no input left to resubmit"
    # Only one claimant can move the attempt counter on from what it read.
    sent_ms = now_ms()
    moved = await w.store.transition(
        job.id,
        JobStatus.SUBMITTING,
        reason="resubmit",
        fields={"submit_pending_since_ms": sent_ms, "submit_attempts": job.submit_attempts + 1},
        guard=("submit_attempts", str(job.submit_attempts)),
    )
    if not moved.applied:
        return f"settled: {moved.previous}"
    cause = job.submit_unclear_cause or LOST_MID_SUBMIT
    await w.store.record_event(
        job.id,
        {"event": "resubmit", "cause": cause, "waited_s": round(waited_s, 1)},
        counter="resubmits",
    )
    metrics.DUPLICATE_SUBMITS.inc()
    logger.warning(
        "resubmitting %s: fal lists no request %.0fs after an unclear submit (%s)",
        job.id,
        waited_s,
        cause,
    )
    fal_input = json.dumps(job.input, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        receipt = await w.fal.submit(
            job.endpoint, fal_input, webhook_url=w.settings.fal_webhook_url(job.id)
        )
    except FalRejected as exc:
        error = fal_error("fal_rejected", str(exc), exc.detail)
        await finish_job(
            w.store, job.id, FalOutcome(None, error=error), source="submit", refund=True
        )
        return "rejected by fal"
    except FalUnavailable as exc:
        # This send created nothing (and is not billed: uncount it), but the earlier unclear
        # submit is still unexplained: keep it pending. Its grace is over, so the next try
        # looks in the listing once more and only then sends again.
        await w.store.update_fields(
            job.id, {"submit_pending_since_ms": job.submit_pending_since_ms or sent_ms}
        )
        await w.store.record_event(
            job.id,
            {"event": "resubmit_refused", "detail": str(exc)},
            counter="resubmits",
            counter_by=-1,
        )
        delay_s = max(exc.retry_after_s or 0.0, w.backoff_s(ctx.get("job_try", 1)))
        raise Retry(defer=delay_s) from exc
    except FalAmbiguous as exc:
        await w.store.update_fields(job.id, {"submit_unclear_cause": str(exc)})
        raise Retry(defer=w.settings.submit_lookup_interval_s) from exc
    return await record_acceptance(w, job.id, receipt)
