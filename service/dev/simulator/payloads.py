"""The JSON bodies fal's queue answers with and sends, built from one request record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.dev.simulator.requests import QueuedRequest, Status


@dataclass(frozen=True)
class RequestUrls:
    """status/response/cancel URLs in fal's owner/app form (never the endpoint sub-path)."""

    response_url: str
    status_url: str
    cancel_url: str

    @classmethod
    def for_request(cls, public_url: str, request: QueuedRequest) -> RequestUrls:
        base = f"{public_url}/{request.rule.app_id}/requests/{request.request_id}"
        return cls(response_url=base, status_url=f"{base}/status", cancel_url=f"{base}/cancel")

    def as_dict(self) -> dict[str, str]:
        return {
            "response_url": self.response_url,
            "status_url": self.status_url,
            "cancel_url": self.cancel_url,
        }


def submitted(request: QueuedRequest, urls: RequestUrls, queue_position: int) -> dict[str, Any]:
    """Answer to a submit POST."""
    return {
        "request_id": request.request_id,
        "gateway_request_id": request.request_id,
        "status": Status.IN_QUEUE.value,
        **urls.as_dict(),
        "queue_position": queue_position,
    }


def status(
    request: QueuedRequest, urls: RequestUrls, queue_position: int | None, with_logs: bool
) -> dict[str, Any]:
    """Answer to a status GET; `queue_position` only while IN_QUEUE, metrics once COMPLETED."""
    body: dict[str, Any] = {
        "status": request.status.value,
        "request_id": request.request_id,
        **urls.as_dict(),
        # fal's Python client reads `logs` unconditionally, so the key is always present.
        "logs": list(request.logs) if with_logs else None,
        "metrics": {},
    }
    if request.status is Status.IN_QUEUE:
        body["queue_position"] = queue_position
    if request.status is Status.COMPLETED:
        if request.inference_time_s is not None:
            body["metrics"] = {"inference_time": request.inference_time_s}
        if request.failure is not None:
            body["error"] = request.failure.error
            body["error_type"] = request.failure.error_type
    return body


def webhook(request: QueuedRequest) -> dict[str, Any]:
    """The completion webhook: OK with the output, or ERROR with the model's error body."""
    envelope: dict[str, Any] = {
        "request_id": request.request_id,
        "gateway_request_id": request.request_id,
    }
    if request.failure is not None:
        return {
            **envelope,
            "status": "ERROR",
            "error": f"Invalid status code: {request.failure.status_code}",
            "payload": request.failure.body,
        }
    return {**envelope, "status": "OK", "payload": request.output}
