"""Turning what fal reports about a request into a job's terminal state, exactly once.

The webhook receiver, the result fetcher and the dispatcher (for refusals at submit) all end
a job through `finish_job`: the first terminal state wins, later reports are logged and ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from service import metrics
from service.fal import normalise_detail
from service.input_archive import keep_input_task
from service.jobs import (
    VIDHOOK_ORIGIN,
    JobStatus,
    fetch_result_task_id,
    mirror_task_id,
)
from service.store import JobStore, Moved, Task, now_ms

logger = logging.getLogger("vidhook.jobs")

# Failures vidhook decides itself, without word from fal that the request failed: fal's
# result may still come, and then wins (jobs.REVISIONS).
VIDHOOK_FAILURES = frozenset({"dispatch_failed", "deadline_exceeded", "fal_request_unknown"})


@dataclass(frozen=True, slots=True)
class FalOutcome:
    """What fal said a request ended as: a result, an error, or 'ask the result URL'."""

    request_id: str | None
    result: Any = None
    error: dict[str, Any] | None = None
    needs_fetch: bool = False
    cancelled: bool = False


# fal's request-error type for a request cancelled before it ran.
FAL_CANCELLED_ERROR_TYPE = "client_cancelled"


def cancelled_error() -> dict[str, Any]:
    """The `error` a cancelled job keeps (the /fal/ door answers its result with it)."""
    return fal_error("cancelled", "Request cancelled")


def is_cancellation(body: Any) -> bool:
    """True when fal's error body says the request was cancelled (`client_cancelled`)."""
    return isinstance(body, dict) and body.get("error_type") == FAL_CANCELLED_ERROR_TYPE


def outcome_from_error(request_id: str | None, message: str, body: Any) -> FalOutcome:
    """A request fal ended with an error body: cancelled, or failed with fal's detail."""
    if is_cancellation(body):
        return FalOutcome(request_id=request_id, error=cancelled_error(), cancelled=True)
    detail = normalise_detail(body) if body is not None else []
    if detail and detail[0].get("msg"):
        message = f"{message}: {detail[0]['msg']}"
    return FalOutcome(request_id=request_id, error=fal_error("fal_request_failed", message, detail))


def input_problems_from_fal(detail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """fal's `detail[]` (`loc` from `body`) in vidhook's error shape (`path` from `input`)."""
    problems = []
    for item in detail:
        loc = item.get("loc")
        path: list[Any] = ["input"]
        if isinstance(loc, list):
            path += loc[1:] if loc and loc[0] == "body" else loc
        problems.append(
            {
                "path": path,
                "message": str(item.get("msg", "")),
                "type": str(item.get("type", "fal_error")),
            }
        )
    return problems


def fal_error(
    kind: str, message: str, detail: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The `error` object of a failed job: a type, a message, and fal's own detail if any."""
    detail = detail or []
    return {
        "type": kind,
        "message": message,
        "errors": input_problems_from_fal(detail),
        "fal_detail": detail,
    }


def outcome_from_webhook(payload: dict[str, Any], request_id: str) -> FalOutcome:
    """Read fal's webhook body: `status` OK or ERROR, `payload`, maybe `payload_error`."""
    status = payload.get("status")
    body = payload.get("payload")
    if status == "OK":
        if body is None and payload.get("payload_error"):
            return FalOutcome(request_id=request_id, needs_fetch=True)
        return FalOutcome(request_id=request_id, result=body)
    return outcome_from_error(
        request_id, str(payload.get("error") or "fal reported an error"), body
    )


MIRROR_PENDING = json.dumps({"status": "pending"})


def completion_follow_ups(job_id: str, status: JobStatus, *, mirror_outputs: bool) -> list[Task]:
    """The tasks a finished job's recording enqueues besides its callback delivery.

    A completed job whose outputs are mirrored gets `mirror_job`, which starts the callback
    delivery itself once the files are copied (or copying gave up); otherwise the step that
    finishes the job starts it (`JobStore.transition`).
    """
    if mirror_outputs and status is JobStatus.COMPLETED:
        return [Task(mirror_task_id(job_id), "mirror_job", (job_id,))]
    return []


async def finish_job(
    store: JobStore,
    job_id: str,
    outcome: FalOutcome,
    *,
    source: str,
    mirror_outputs: bool = False,
    refund: bool = False,
) -> Moved:
    """Move an active job to completed or failed from fal's outcome, at most once.

    The terminal step gives the job's in-flight lease back (and admits the next parked
    job); `refund`, for a job fal never took, also takes back its counted spend.

    `source` (webhook, result, status, submit, dispatch) is the event's reason. An outcome
    without its result moves the job to in_progress and enqueues the fetch instead. The
    follow-ups (`completion_follow_ups`: the client's callback, or with `mirror_outputs` the
    copy of a completed job's files) are enqueued in the same atomic step (the script reads
    the job's callback_url, so callers need not). A job already finished keeps its state;
    the late report is logged to its events.
    """
    request_fields: dict[str, str | int] = {}
    if outcome.request_id:
        request_fields["fal_request_id"] = outcome.request_id
    if outcome.needs_fetch:
        fetch = Task(fetch_result_task_id(job_id), "fetch_result", (job_id,))
        moved = await store.transition(
            job_id,
            JobStatus.IN_PROGRESS,
            reason=f"{source}_payload_error",
            fields=request_fields,
            follow_ups=[fetch],
        )
        if not moved.applied and moved.previous is JobStatus.IN_PROGRESS:
            # Already running, so not a state change; the result must still be fetched.
            await store.update_fields(job_id, request_fields, follow_ups=[fetch])
        return moved
    fields: dict[str, str | int]
    if outcome.cancelled:
        status, fields = JobStatus.CANCELLED, {"error": json.dumps(outcome.error)}
    elif outcome.error is not None:
        status, fields = JobStatus.FAILED, {"error": json.dumps(outcome.error)}
        if outcome.error.get("type") in VIDHOOK_FAILURES:
            fields["failure_origin"] = VIDHOOK_ORIGIN
    else:
        status, fields = JobStatus.COMPLETED, {"result": json.dumps(outcome.result)}
    follow_ups = completion_follow_ups(job_id, status, mirror_outputs=mirror_outputs)
    mirrored = any(task.function == "mirror_job" for task in follow_ups)
    if mirrored:
        fields["mirror"] = MIRROR_PENDING
    moved = await store.transition(
        job_id,
        status,
        reason=source,
        fields={**request_fields, **fields, "completed_at_ms": now_ms()},
        # The input (possibly megabytes of data URIs) is never sent again: to the media store.
        follow_ups=[*follow_ups, keep_input_task(store.keys, job_id)],
        # The mirror announces the job once its files are copied.
        deliver=not mirrored,
        refused_event={
            "event": "late_outcome",
            "source": source,
            "status": status.value,
            "fal_request_id": outcome.request_id,
        },
        finished=True,
        refund=refund,
    )
    if moved.applied:
        tenant = await metrics.job_finished(store.redis, store.keys, job_id, status.value)
        logger.info(
            "job.finished",
            extra={"job_id": job_id, "fal_request_id": outcome.request_id, "tenant": tenant,
                   "status": status.value, "source": source},
        )  # fmt: skip
    if not moved.applied and status is JobStatus.COMPLETED and moved.previous is JobStatus.FAILED:
        return await _revise_own_failure(store, job_id, {**request_fields, **fields}, source)
    return moved


async def _revise_own_failure(
    store: JobStore, job_id: str, fields: dict[str, str | int], source: str
) -> Moved:
    """fal finished a request of a job vidhook had failed itself: fal's result wins.

    The job keeps its old error (shown as `superseded`), and the client gets a second
    callback, job.completed, under its own stable message id (the step starts its delivery).
    """
    revised = await store.revise_own_failure(
        job_id,
        JobStatus.COMPLETED,
        reason=f"{source}_after_own_failure",
        fields={
            **fields,
            "completed_at_ms": now_ms(),
            "callback_status": "",
            "callback_attempts": 0,
            "callback_last_error": "",
        },
    )
    if revised.applied:
        await store.record_event(
            job_id, {"event": "own_failure_revised", "source": source, "status": "completed"}
        )
    return revised
