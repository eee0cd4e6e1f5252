"""The two error shapes fal answers with, and the failures a simulated request can end in.

Model errors (input validation, file problems) are `{"detail": [ {loc, msg, type, ...} ]}`
with HTTP 422; request errors (infrastructure, cancellation) are the flat
`{"detail": "<text>", "error_type": "<type>"}` plus an `X-Fal-Error-Type` header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ErrorDetail = dict[str, Any]

_DOCS_URL = "https://docs.fal.ai/errors/#{}"
_DATA_URI_ECHO_CHARS = 64


def echo_input(value: str) -> str:
    """The `input` to echo back: data URIs are cut short so an 8 MB image is not repeated."""
    if value.startswith("data:") and len(value) > _DATA_URI_ECHO_CHARS:
        return value[:_DATA_URI_ECHO_CHARS] + "..."
    return value


def file_error(
    loc: Sequence[str | int],
    error_type: str,
    msg: str,
    value: str,
    ctx: dict[str, Any] | None = None,
) -> ErrorDetail:
    """One fal-specific model error about a file input, in fal's documented shape."""
    detail: ErrorDetail = {
        "loc": list(loc),
        "msg": msg,
        "type": error_type,
        "url": _DOCS_URL.format(error_type),
        "input": echo_input(value),
    }
    if ctx is not None:
        detail["ctx"] = ctx
    return detail


@dataclass(frozen=True)
class Failure:
    """How a request ended when the model did not return a video.

    `status_code` and `body` are what the result URL answers; `error` and `error_type` go into
    the COMPLETED status, and the webhook carries `Invalid status code: <n>` plus `body`.
    """

    status_code: int
    body: dict[str, Any]
    error: str
    error_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def validation(cls, details: Sequence[ErrorDetail]) -> Failure:
        """The model rejected its input (HTTP 422); `error_type` is the first detail's type."""
        first_type = str(details[0]["type"]) if details else "validation_error"
        return cls(
            status_code=422,
            body={"detail": list(details)},
            error="Invalid status code: 422",
            error_type=first_type,
        )

    @classmethod
    def request_error(cls, status_code: int, detail: str, error_type: str) -> Failure:
        """An infrastructure-level failure in fal's flat request-error shape."""
        return cls(
            status_code=status_code,
            body={"detail": detail, "error_type": error_type},
            error=detail,
            error_type=error_type,
            headers={"X-Fal-Error-Type": error_type},
        )

    @classmethod
    def cancelled(cls) -> Failure:
        """A request cancelled while it still waited in the queue (fal's `client_cancelled`)."""
        return cls.request_error(499, "Request cancelled", "client_cancelled")

    @classmethod
    def runner_error(cls) -> Failure:
        """The simulated runner crashed (a simulator bug): fal's `runner_server_error`."""
        return cls.request_error(500, "Runner encountered an internal error", "runner_server_error")

    @classmethod
    def internal(cls, detail: str = "Internal server error") -> Failure:
        """The render itself broke: nothing the caller did, so 500 `internal_error`."""
        return cls.request_error(500, detail, "internal_error")


class InputRejected(Exception):
    """A request's input failed validation; `details` are every problem found."""

    def __init__(self, details: Sequence[ErrorDetail]) -> None:
        super().__init__(f"{len(details)} input error(s)")
        self.details = list(details)
