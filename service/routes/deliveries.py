"""A job's callback deliveries, the tenant's dead letters, and redelivery: thin handlers.

GET /v1/jobs/{id}/deliveries and POST /v1/jobs/{id}/callback/redeliver act on a job like
GET /v1/jobs/{id} does (the tenant's own; an admin key: anyone's). GET /v1/callbacks/dead
lists the caller's dead-lettered deliveries (an admin key names the tenant with `?tenant=`).
The state is service/deliveries.py's.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import admin_name, authenticate, owned_job
from service.context import ApiContext
from service.deliveries import DEAD_LETTERS_MAX
from service.domain_errors import NothingToRedeliver
from service.errors import InvalidRequest
from service.jobs import CALLBACK_EVENT_TYPES


async def list_deliveries(request: Request) -> Response:
    """Every delivery of the job's callback, oldest first, each with its attempts."""
    ctx: ApiContext = request.app.state.ctx
    job = await owned_job(request)
    found = await ctx.deliveries.for_job(job.id)
    return JSONResponse(
        {
            "object": "list",
            "job_id": job.id,
            "data": [delivery.to_resource(attempts) for delivery, attempts in found],
        }
    )


async def redeliver(request: Request) -> Response:
    """202: the job's dead-lettered deliveries (or `?event=`'s, or else the latest finished
    one) are sent again; 409 when the job has no callback or nothing finished to send."""
    ctx: ApiContext = request.app.state.ctx
    job = await owned_job(request)
    event = request.query_params.get("event") or None
    if event is not None and event not in CALLBACK_EVENT_TYPES:
        raise _bad_query("event", "must be one of " + ", ".join(CALLBACK_EVENT_TYPES))
    if job.callback_url is None:
        raise NothingToRedeliver(job.id, "it has no callback_url")
    started = await ctx.deliveries.redeliver(job.id, event)
    await ctx.store.update_fields(
        job.id, {"callback_status": "pending", "callback_attempts": 0, "callback_last_error": ""}
    )
    return JSONResponse(
        {"object": "list", "job_id": job.id, "data": [d.to_resource() for d in started]},
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}/deliveries"},
    )


async def dead_letters(request: Request) -> Response:
    """The tenant's dead-lettered deliveries, newest first (`?limit=`, at most 200)."""
    ctx: ApiContext = request.app.state.ctx
    if admin_name(request) is not None:
        tenant = request.query_params.get("tenant") or ""
        if not tenant:
            raise _bad_query("tenant", "an admin key names the tenant whose dead letters to list")
    else:
        tenant = await authenticate(request)
    raw_limit = request.query_params.get("limit") or "50"
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 200:
        raise _bad_query("limit", f"must be an integer from 1 to {DEAD_LETTERS_MAX}")
    found = await ctx.deliveries.dead_letters(tenant, limit=int(raw_limit))
    return JSONResponse(
        {"object": "list", "tenant": tenant, "data": [d.to_resource() for d in found]}
    )


def _bad_query(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"The query parameter {name} is not valid.",
        [{"path": ["query", name], "message": message, "type": "invalid"}],
    )
