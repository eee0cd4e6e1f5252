"""Every refusal of the /fal/ door, in fal's shapes (fal-protocol.md §1.8, §2), in one place.

Validation: 422 `{"detail": [{"loc": ["body", …], "msg", "type", "ctx"?}]}`, the locs of the
job request mapped to fal's (`input.x` → `body.x`, `callback_url` → `query.fal_webhook`).
Unknown request ids: 404 `{"status": "NOT_FOUND"}`; cancelling a finished one: 400
`{"status": "ALREADY_COMPLETED"}`; anything else: `{"detail": "<text>"}` with its status code.

No answer here is one fal's clients retry (408, 409, 429): a refusal is final.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain_errors import (
    DomainError,
    IdempotencyKeyReused,
    JobAlreadyFinished,
    JobNotFound,
    MediaStoreUnavailable,
    RequestRejected,
    SpendCapExceeded,
    UpstreamUnavailable,
)
from service.errors import ApiError, MalformedBody
from service.intake import IDEMPOTENCY_KEY_LOC
from service.validation import InputProblem

logger = logging.getLogger("vidhook.fal_door")


def fal_loc(loc: tuple[str | int, ...]) -> list[str | int]:
    """A job-request path as fal locates it: the input is fal's body, the callback its query."""
    if loc[:1] == ("input",):
        return ["body", *loc[1:]]
    if loc[:1] == ("callback_url",):
        return ["query", "fal_webhook", *loc[1:]]
    if loc[:2] == IDEMPOTENCY_KEY_LOC:
        return ["header", "Idempotency-Key"]
    return ["path", *loc]


def fal_detail_item(problem: InputProblem) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": fal_loc(problem.loc), "msg": problem.msg, "type": problem.type}
    if problem.ctx:
        item["ctx"] = dict(problem.ctx)
    return item


def answer_for(exc: DomainError) -> JSONResponse:
    """The /fal/ answer to a domain refusal."""
    if isinstance(exc, RequestRejected):
        unknown = [p for p in exc.problems if p.loc == ("endpoint",)]
        if unknown:
            # fal answers an endpoint it does not serve with 404, not a validation error.
            return JSONResponse({"detail": unknown[0].msg}, 404)
        return JSONResponse({"detail": [fal_detail_item(p) for p in exc.problems]}, 422)
    if isinstance(exc, IdempotencyKeyReused):
        item = {"loc": fal_loc(IDEMPOTENCY_KEY_LOC), "msg": str(exc), "type": "key_reused"}
        return JSONResponse({"detail": [item]}, 422)
    if isinstance(exc, JobNotFound):
        return JSONResponse({"status": "NOT_FOUND", "detail": "Request not found"}, 404)
    if isinstance(exc, JobAlreadyFinished):
        return JSONResponse({"status": "ALREADY_COMPLETED"}, 400)
    if isinstance(exc, UpstreamUnavailable):
        return JSONResponse({"detail": str(exc), "error_type": "internal_error"}, 502)
    if isinstance(exc, MediaStoreUnavailable):
        return JSONResponse({"detail": str(exc), "error_type": "internal_error"}, 503)
    if isinstance(exc, SpendCapExceeded):
        # 402: not one of the answers fal's clients retry.
        return JSONResponse({"detail": str(exc), "error_type": "spend_cap_exceeded"}, 402)
    return JSONResponse({"detail": str(exc), "error_type": "internal_error"}, 500)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return answer_for(exc)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, MalformedBody):
        item = {"loc": ["body"], "msg": exc.detail, "type": "json_invalid"}
        return JSONResponse({"detail": [item]}, 422)
    headers = {"WWW-Authenticate": "Key"} if exc.status_code == 401 else None
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal server error", "error_type": "internal_error"}, 500)


EXCEPTION_HANDLERS = {
    DomainError: handle_domain_error,
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
