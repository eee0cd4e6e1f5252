"""The API's error tree, answered in one place as RFC 9457 `application/problem+json`.

ApiError
 ├── Unauthorized        401  no or unknown API key
 ├── Forbidden           403  a call this service will not make on the caller's behalf
 ├── NotFound            404  no such resource for this tenant
 ├── MalformedBody       400  not JSON, or not the JSON shape expected
 ├── BadRequest          400  a header the call needs is missing or unreadable
 ├── UnsupportedMedia    415  not application/json
 ├── PayloadTooLarge     413  body over the configured limit
 ├── PreconditionFailed  412  a proxy target outside fal's hosts
 ├── Conflict            409  an Idempotency-Key reused for a different request
 ├── InvalidRequest      422  every validation problem at once, each with a path
 └── BadGateway          502  fal could not be reached for a call that needed it

The domain's refusals (`service.domain_errors`) are mapped onto this tree in one place,
`api_error_for`, so every /v1 route answers them the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.domain_errors import (
    DomainError,
    IdempotencyKeyReused,
    JobAlreadyFinished,
    JobNotFound,
    RequestRejected,
    UpstreamUnavailable,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://vidhook.dev/problems/"

logger = logging.getLogger("vidhook.api")


FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path", "message", "type"],
    "properties": {
        "path": {
            "type": "array",
            "items": {"type": ["string", "integer"]},
            "examples": [["input", "duration"]],
        },
        "message": {"type": "string"},
        "type": {"type": "string", "examples": ["enum", "missing", "unknown_field"]},
        "ctx": {"type": "object", "description": "Structured extras: allowed values, limits."},
    },
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Every validation problem at once (422 only).",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
        "job_id": {"type": "string", "description": "The job an Idempotency-Key points at (409)."},
    },
}


class ApiError(Exception):
    status_code = 500
    slug = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
            **self.extra,
        }


class Unauthorized(ApiError):
    status_code = 401
    slug = "unauthorized"
    title = "Missing or unknown API key"


class Forbidden(ApiError):
    status_code = 403
    slug = "forbidden"
    title = "Forbidden"


class PreconditionFailed(ApiError):
    status_code = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class NotFound(ApiError):
    status_code = 404
    slug = "not-found"
    title = "Not found"


class MalformedBody(ApiError):
    status_code = 400
    slug = "malformed-body"
    title = "The request body cannot be read"


class BadRequest(ApiError):
    status_code = 400
    slug = "bad-request"
    title = "Bad request"


class UnsupportedMedia(ApiError):
    status_code = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class PayloadTooLarge(ApiError):
    status_code = 413
    slug = "payload-too-large"
    title = "Request body too large"


class Conflict(ApiError):
    status_code = 409
    slug = "conflict"
    title = "Conflict"


class InvalidRequest(ApiError):
    status_code = 422
    slug = "validation-failed"
    title = "The request is not valid"

    def __init__(self, detail: str, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__(detail, errors=list(errors))


class Unavailable(ApiError):
    status_code = 503
    slug = "unavailable"
    title = "Temporarily unavailable"


class BadGateway(ApiError):
    status_code = 502
    slug = "bad-gateway"
    title = "fal could not be reached"


def api_error_for(exc: DomainError) -> ApiError:
    """The /v1 answer to a domain refusal."""
    if isinstance(exc, RequestRejected):
        return InvalidRequest(
            str(exc),
            [
                {
                    "path": list(p.loc),
                    "message": p.msg,
                    "type": p.type,
                    **({"ctx": dict(p.ctx)} if p.ctx else {}),
                }
                for p in exc.problems
            ],
        )
    if isinstance(exc, IdempotencyKeyReused):
        return Conflict(str(exc), job_id=exc.job_id)
    if isinstance(exc, JobAlreadyFinished):
        return Conflict(str(exc), job_id=exc.job_id)
    if isinstance(exc, JobNotFound):
        return NotFound(str(exc))
    if isinstance(exc, UpstreamUnavailable):
        return BadGateway(str(exc))
    return ApiError(str(exc))


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(problem, separators=(",", ":")),
        status_code=int(problem["status"]),
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, Unavailable):
        headers = {"Retry-After": "1"}
    return problem_response(exc.problem(), headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return problem_response(api_error_for(exc).problem())


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    problem = {
        "type": "about:blank",
        "title": exc.detail,
        "status": exc.status_code,
        "detail": exc.detail,
    }
    return problem_response(problem, dict(exc.headers) if exc.headers else None)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(ApiError("An unexpected error occurred.").problem())
