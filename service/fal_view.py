"""A vidhook job as fal's queue protocol shows it (shared/fal-protocol.md §1.4 to §1.8, §3.1).

The `/fal/` door answers with these shapes, and a job that came through it with a
`fal_webhook` is announced with fal's webhook payload. The `request_id` is the vidhook job id.

vidhook status              fal status     HTTP
queued, submitting          IN_QUEUE       202  (queue_position: rank in vidhook's queue)
submitted, in_progress      IN_PROGRESS    202
completed, failed, cancelled COMPLETED     200  (failures carry error + error_type)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.jobs import Job, JobStatus

REQUEST_ID_HEADER = "x-fal-request-id"

_IN_QUEUE = frozenset({JobStatus.QUEUED, JobStatus.SUBMITTING})


@dataclass(frozen=True, slots=True)
class RequestUrls:
    """A request's URLs under the door's base (e.g. `https://vidhook.example/fal`)."""

    response_url: str
    status_url: str
    cancel_url: str

    @classmethod
    def under(cls, base_url: str, job: Job) -> RequestUrls:
        base = f"{base_url.rstrip('/')}/{app_id(job.endpoint)}/requests/{job.id}"
        return cls(response_url=base, status_url=f"{base}/status", cancel_url=f"{base}/cancel")

    def as_dict(self) -> dict[str, str]:
        return {
            "response_url": self.response_url,
            "status_url": self.status_url,
            "cancel_url": self.cancel_url,
        }


@dataclass(frozen=True, slots=True)
class FalAnswer:
    """An HTTP answer in fal's shape: status code and JSON body."""

    status_code: int
    body: Any


def app_id(endpoint: str) -> str:
    """`owner/app` of an endpoint id, the prefix fal uses for status, result and cancel."""
    parts = endpoint.split("/")
    if parts[0] in ("workflows", "comfy"):
        return "/".join(parts[:3])
    return "/".join(parts[:2])


def names_job(prefix: str, job: Job) -> bool:
    """True when a request path's app prefix fits the job (owner/app or the full endpoint)."""
    return prefix in (app_id(job.endpoint), job.endpoint)


def fal_status(job: Job) -> str:
    if job.status in _IN_QUEUE:
        return "IN_QUEUE"
    if job.status.is_terminal:
        return "COMPLETED"
    return "IN_PROGRESS"


def submitted(job: Job, urls: RequestUrls, queue_position: int) -> dict[str, Any]:
    """The answer to a submit POST."""
    return {
        "request_id": job.id,
        "gateway_request_id": job.id,
        "status": "IN_QUEUE",
        **urls.as_dict(),
        "queue_position": queue_position,
    }


def status(
    job: Job, urls: RequestUrls, *, queue_position: int | None, with_logs: bool
) -> FalAnswer:
    """The answer to a status GET: 202 until COMPLETED, then 200."""
    state = fal_status(job)
    body: dict[str, Any] = {
        "status": state,
        "request_id": job.id,
        **urls.as_dict(),
        # fal's Python client reads `logs` unconditionally; vidhook keeps no model logs, and an
        # empty list is what fal answers for a request that logged nothing.
        "logs": [] if with_logs else None,
        "metrics": {},
    }
    if state == "IN_QUEUE":
        body["queue_position"] = queue_position or 0
    if state == "COMPLETED" and job.status is not JobStatus.COMPLETED:
        error, error_type = _error_summary(job)
        body["error"] = error
        body["error_type"] = error_type
    return FalAnswer(200 if state == "COMPLETED" else 202, body)


def result(job: Job) -> FalAnswer:
    """The answer to a result GET: the output, or the error fal answered for the request."""
    if job.status is JobStatus.COMPLETED:
        return FalAnswer(200, job.result)
    if job.status is JobStatus.CANCELLED:
        return FalAnswer(499, {"detail": "Request cancelled", "error_type": "client_cancelled"})
    if job.status is JobStatus.FAILED:
        detail = (job.error or {}).get("fal_detail") or []
        if detail:
            return FalAnswer(422, {"detail": detail})
        error, error_type = _error_summary(job)
        return FalAnswer(500, {"detail": error, "error_type": error_type})
    # Undocumented on fal (its clients poll status first); answered as the simulator does.
    return FalAnswer(400, {"detail": "Request is still in progress"})


def webhook_payload(job: Job) -> dict[str, Any]:
    """fal's completion webhook body for a finished job (§3.1): OK with the output, or ERROR."""
    envelope: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
    if job.status is JobStatus.COMPLETED:
        return {**envelope, "status": "OK", "payload": job.result}
    answer = result(job)
    return {
        **envelope,
        "status": "ERROR",
        "error": f"Invalid status code: {answer.status_code}",
        "payload": answer.body,
    }


def _error_summary(job: Job) -> tuple[str, str]:
    if job.status is JobStatus.CANCELLED:
        return "Request cancelled", "client_cancelled"
    error = job.error or {}
    detail = error.get("fal_detail") or []
    if detail and isinstance(detail[0], dict) and detail[0].get("type"):
        return str(error.get("message") or "Request failed"), str(detail[0]["type"])
    return str(error.get("message") or "Request failed"), "internal_error"
