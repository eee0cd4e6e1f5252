"""The API's error tree, answered in one place as RFC 9457 `application/problem+json`.

ApiError
 ├── Unauthorized        401  no or unknown API key
 ├── Forbidden           403  a call this service will not make on the caller's behalf
 ├── WebhookRefused      403  a fal webhook not signed by fal for this job (not an API-key matter)
 ├── NotFound            404  no such resource for this tenant
 ├── MalformedBody       400  not JSON, or not the JSON shape expected
 ├── BadRequest          400  a header the call needs is missing or unreadable
 ├── UnsupportedMedia    415  not application/json; an upload that is no accepted type
 ├── PayloadTooLarge     413  body over the configured limit
 ├── PreconditionFailed  412  a proxy target outside fal's hosts
 ├── Conflict            409  an Idempotency-Key reused for a different request
 ├── InvalidRequest      422  every validation problem at once, each with a path
 ├── BadGateway          502  fal could not be reached for a call that needed it
 └── StorageUnavailable  503  the media store refused or could not be reached
 └── Unavailable         503  Redis or fal's JWKS unreachable; `Retry-After` says when

The domain's refusals (`service.domain_errors`) are mapped onto this tree in one place,
`api_error_for`, so every /v1 route answers them the same way. Redis's connection and timeout
errors (an outage, a full connection pool) are answered here too, once, as Unavailable: a
dependency outage is the client's cue to retry, not a bug.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.domain_errors import (
    DomainError,
    IdempotencyKeyReused,
    JobAlreadyFinished,
    JobNotFound,
    MediaStoreUnavailable,
    NothingToRedeliver,
    RequestRejected,
    SpendCapExceeded,
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
            "description": "Every problem at once, each with a path (400 and 422).",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
        "job_id": {"type": "string", "description": "The job an Idempotency-Key points at (409)."},
        "period": {"enum": ["daily", "monthly"], "description": "The spend cap reached (402)."},
        "spent_usd": {"type": "number", "description": "Spend counted in that period (402)."},
        "cap_usd": {"type": "number", "description": "The cap (402)."},
        "estimated_cost_usd": {"type": "number", "description": "The refused job's (402)."},
        "resets_at": {"type": "string", "format": "date-time", "description": "Period end."},
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


class WebhookRefused(ApiError):
    status_code = 403
    slug = "webhook-refused"
    title = "Webhook refused"


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


class SpendCapReached(ApiError):
    # 402, not 429: clients (fal's among them) retry a 429 by themselves within seconds, and a
    # daily or monthly cap does not lift that soon.
    status_code = 402
    slug = "spend-cap-exceeded"
    title = "The tenant's spend cap would be exceeded"


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
    if isinstance(exc, JobAlreadyFinished | NothingToRedeliver):
        return Conflict(str(exc), job_id=exc.job_id)
    if isinstance(exc, JobNotFound):
        return NotFound(str(exc))
    if isinstance(exc, UpstreamUnavailable):
        return BadGateway(str(exc))
    if isinstance(exc, MediaStoreUnavailable):
        return StorageUnavailable(str(exc))
    if isinstance(exc, SpendCapExceeded):
        return SpendCapReached(
            str(exc),
            period=exc.period,
            spent_usd=exc.spent_usd,
            cap_usd=exc.cap_usd,
            estimated_cost_usd=exc.cost_usd,
            resets_at=exc.resets_at,
        )
    return ApiError(str(exc))


class StorageUnavailable(ApiError):
    status_code = 503
    slug = "storage-unavailable"
    title = "The media store is unavailable"


class Unavailable(ApiError):
    status_code = 503
    slug = "unavailable"
    title = "Service temporarily unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


# What redis-py raises when Redis is down, slow, or every pooled connection is busy.
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(problem, separators=(",", ":")),
        status_code=int(problem["status"]),
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers: dict[str, str] | None = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, Unavailable):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return problem_response(exc.problem(), headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return problem_response(api_error_for(exc).problem())


async def handle_redis_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning(
        "Redis unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc,
    )
    # A create whose reply was lost may have been applied: the client's Idempotency-Key makes
    # the retry safe, which is why the detail says so.
    unavailable = Unavailable(
        "The job store is unreachable right now; retry (with the same Idempotency-Key)."
    )
    return await handle_api_error(request, unavailable)


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
