"""Cancelling a job, for every door (`POST /v1/jobs/{id}/cancel`, fal's `PUT …/cancel`).

A job still in vidhook's queue is cancelled at once and never reaches fal. A job already at
fal is cancelled there (fal's `PUT {cancel_url}`) and only marked `cancel_requested_at_ms`: it
becomes `cancelled` when fal confirms (its webhook or the reconciler reports
`client_cancelled`), and keeps the real outcome when fal finishes it anyway (a running Veo job
completes and bills; fal answers ALREADY_COMPLETED for one that had ended).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import Enum

from service import metrics
from service.completions import cancelled_error
from service.context import ApiContext
from service.domain_errors import JobAlreadyFinished, JobNotFound, UpstreamUnavailable
from service.fal import CancelAnswer, FalError
from service.input_archive import keep_input_task
from service.jobs import Job, JobStatus
from service.store import now_ms

# A job being submitted has no cancel URL yet; its submit answer normally lands in ms.
_SUBMIT_SETTLE_POLL_S = 0.05


class CancelOutcome(Enum):
    CANCELLED = "cancelled"  # the job is cancelled now
    REQUESTED = "requested"  # fal was asked; the job ends when fal says how it ended


@dataclass(frozen=True, slots=True)
class Cancelled:
    outcome: CancelOutcome
    job: Job


async def cancel_job(ctx: ApiContext, tenant: str, job_id: str) -> Cancelled:
    """Cancel the tenant's job `job_id`: at once while queued, at fal once it is there.

    Raises:
        JobNotFound: no such job for this tenant.
        JobAlreadyFinished: the job, or fal's request for it, has already ended.
        UpstreamUnavailable: fal did not answer the cancel; nothing was changed.
    """
    job = await _owned(ctx, tenant, job_id)
    if job.status is JobStatus.QUEUED:
        moved = await ctx.store.transition(
            job_id,
            JobStatus.CANCELLED,
            reason="cancel",
            fields={
                "cancel_requested_at_ms": now_ms(),
                "completed_at_ms": now_ms(),
                "error": json.dumps(cancelled_error()),
            },
            # Never sent: the input moves to the media store with the job's end.
            follow_ups=[keep_input_task(ctx.store.keys, job_id)],
            # Only while no worker has claimed the submit: once claimed, fal must be asked.
            guard=("status", JobStatus.QUEUED.value),
            # Never at fal: its lease (if admitted) and place in line are given back, and
            # its estimated spend refunded, in this same step.
            finished=True,
            refund=True,
        )
        if moved.applied:
            await metrics.job_finished(ctx.redis, ctx.store.keys, job_id, JobStatus.CANCELLED)
            return Cancelled(CancelOutcome.CANCELLED, await _owned(ctx, tenant, job_id))
        job = await _owned(ctx, tenant, job_id)  # dispatch claimed it in between
    if job.status is JobStatus.SUBMITTING:
        job = await _settled(ctx, tenant, job)
    if job.status.is_terminal:
        raise JobAlreadyFinished(job_id, job.status.value)
    cancel_url = _cancel_url(ctx, job)
    if cancel_url is not None:
        try:
            answer = await ctx.fal.cancel(cancel_url)
        except FalError as exc:
            raise UpstreamUnavailable(f"fal did not take the cancel: {exc}") from exc
        if answer is CancelAnswer.ALREADY_COMPLETED:
            raise JobAlreadyFinished(job_id, "completed at fal")
        if answer is CancelAnswer.NOT_FOUND:
            raise UpstreamUnavailable("fal does not know this job's request")
    # Without a cancel URL the submit's outcome is still unclear; the mark tells the operator
    # and the client that a cancel was asked, and fal's outcome (if any) still decides.
    await ctx.store.update_fields(job_id, {"cancel_requested_at_ms": now_ms()})
    return Cancelled(CancelOutcome.REQUESTED, await _owned(ctx, tenant, job_id))


async def _owned(ctx: ApiContext, tenant: str, job_id: str) -> Job:
    job = await ctx.store.get(job_id)
    if job is None or job.tenant != tenant:
        raise JobNotFound(job_id)
    return job


async def _settled(ctx: ApiContext, tenant: str, job: Job) -> Job:
    """The job once its submit in flight has an answer (bounded by the submit timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.settings.fal_submit_timeout_s + 1.0
    while job.status is JobStatus.SUBMITTING and loop.time() < deadline:
        await asyncio.sleep(_SUBMIT_SETTLE_POLL_S)
        job = await _owned(ctx, tenant, job.id)
    return job


def _cancel_url(ctx: ApiContext, job: Job) -> str | None:
    if job.fal_cancel_url:
        return job.fal_cancel_url
    if not job.fal_request_id:
        return None
    owner_app = "/".join(job.endpoint.split("/")[:2])
    base = str(ctx.settings.fal_queue_base_url).rstrip("/")
    return f"{base}/{owner_app}/requests/{job.fal_request_id}/cancel"
