"""POST and GET /v1/jobs, GET /v1/jobs/{id}, POST /v1/jobs/{id}/cancel: thin handlers.

Domain refusals propagate to the app's handler (`service.errors.handle_domain_error`).

Both POST and GET can wait for the job to finish instead of answering at once: `GET …?wait=N`
(a long-poll) and `POST` with `Prefer: wait=N` (RFC 7240). The waiting is service/waiters.py's:
woken by Redis pub/sub, never a polling loop.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import metrics
from service.auth import acting_tenant, admin_name, authenticate
from service.bodies import read_json
from service.cancellation import CancelOutcome, cancel_job
from service.context import ApiContext
from service.errors import InvalidRequest, NotFound
from service.intake import accept_job
from service.job_index import MAX_PAGE_SIZE, BadCursor, JobFilter
from service.jobs import Job, JobStatus
from service.prefer import preferred_wait_s
from service.waiters import wait_for_job

# The longest `?wait=` and `Prefer: wait=` a client may ask for (WAIT_MAX_S may cap it lower).
MAX_WAIT_S = 60


async def create_job(request: Request) -> Response:
    with metrics.INTAKE_SECONDS.time():
        return await _create_job(request)


async def _create_job(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = await authenticate(request)
    body = await read_json(request, ctx.settings.max_request_bytes)
    accepted = await accept_job(ctx, tenant, body, request.headers.get("idempotency-key"))
    return await _answer_preferring_wait(request, accepted.job, replayed=accepted.replayed)


async def _answer_preferring_wait(
    request: Request, job: Job, *, replayed: bool = False
) -> Response:
    """The answer to a POST that made (or replayed) `job`, after `Prefer: wait=N` if asked.

    Waits up to N s (at most MAX_WAIT_S, WAIT_MAX_S) for the job to finish, then answers with
    it as it is: a new job that finished is 200, one still running the usual 202.
    """
    ctx: ApiContext = request.app.state.ctx
    preferred = preferred_wait_s(request.headers.getlist("prefer"))
    wait_s = min(preferred or 0, MAX_WAIT_S, ctx.settings.wait_max_s)
    if wait_s <= 0 or job.status.is_terminal:
        return _job_response(job, status_code=200 if replayed else 202, replayed=replayed)
    waited = await wait_for_job(ctx.store, ctx.waiters, job.id, wait_s, tenant=job.tenant)
    if waited is None:
        raise NotFound(f"Job {job.id!r} no longer exists.")
    finished = waited.status.is_terminal
    response = _job_response(
        waited, status_code=200 if replayed or finished else 202, replayed=replayed
    )
    response.headers["Preference-Applied"] = f"wait={wait_s:g}"
    return response


def _wait_param(request: Request) -> int:
    raw = request.query_params.get("wait")
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_WAIT_S:
        raise InvalidRequest(
            "The wait parameter is not valid.",
            [
                {
                    "path": ["query", "wait"],
                    "message": f"must be a whole number of seconds from 0 to {MAX_WAIT_S}",
                    "type": "range",
                }
            ],
        )
    return int(raw)


async def get_job(request: Request) -> Response:
    """The job; with `?wait=N`, as soon as it is finished or after N seconds (a long-poll)."""
    ctx: ApiContext = request.app.state.ctx
    job_id = request.path_params["job_id"]
    tenant, as_admin = await acting_tenant(request, job_id)
    wait_s = min(_wait_param(request), ctx.settings.wait_max_s)
    job = await wait_for_job(ctx.store, ctx.waiters, job_id, wait_s, tenant=tenant)
    if job is None:
        raise NotFound(f"No job {job_id!r}.")
    if as_admin:  # as in an admin's listing: say whose job it is
        resource = {**job.to_resource(), "tenant": job.tenant}
        return JSONResponse(resource, headers={"Location": f"/v1/jobs/{job.id}"})
    return _job_response(job, status_code=200)


async def cancel(request: Request) -> Response:
    """200 with the job once cancelled; 202 while fal is asked to; 409 if it already ended."""
    ctx: ApiContext = request.app.state.ctx
    tenant, _ = await acting_tenant(request, request.path_params["job_id"])
    cancelled = await cancel_job(ctx, tenant, request.path_params["job_id"])
    status_code = 200 if cancelled.outcome is CancelOutcome.CANCELLED else 202
    return _job_response(cancelled.job, status_code=status_code)


async def list_jobs(request: Request) -> Response:
    """GET /v1/jobs: the caller's jobs (an admin key's: every tenant's), newest first."""
    ctx: ApiContext = request.app.state.ctx
    query = request.query_params
    tenant: str | None
    if admin_name(request) is not None:
        tenant = query.get("tenant") or None
    else:
        tenant = await authenticate(request)
    where = JobFilter(
        tenant=tenant,
        status=_query_enum(query.get("status")),
        endpoint=query.get("endpoint") or None,
        created_after_ms=_query_ms(query.get("created_after"), "created_after"),
        created_before_ms=_query_ms(query.get("created_before"), "created_before"),
    )
    limit = _query_int(query.get("limit"), "limit", default=50)
    try:
        page = await ctx.index.page(where, limit=limit, cursor=query.get("cursor") or None)
    except BadCursor as exc:
        raise _bad_query("cursor", str(exc)) from exc
    resources = []
    for job in page.jobs:
        resource = job.to_resource()
        if tenant is None:
            resource["tenant"] = job.tenant
        resources.append(resource)
    return JSONResponse({"object": "list", "data": resources, "next_cursor": page.next_cursor})


def _bad_query(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"The query parameter {name} is not valid.",
        [{"path": ["query", name], "message": message, "type": "invalid"}],
    )


def _query_enum(value: str | None) -> JobStatus | None:
    if not value:
        return None
    try:
        return JobStatus(value)
    except ValueError as exc:
        allowed = ", ".join(status.value for status in JobStatus)
        raise _bad_query("status", f"must be one of {allowed}") from exc


def _query_int(value: str | None, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise _bad_query(name, f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(value)


def _query_ms(value: str | None, name: str) -> int | None:
    """An ISO 8601 time (or milliseconds since the epoch) as epoch milliseconds."""
    if not value:
        return None
    if value.isascii() and value.isdigit() and len(value) < 16:
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad_query(name, "must be an ISO 8601 time or epoch milliseconds") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _job_response(job: Job, *, status_code: int, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job.to_resource(), status_code=status_code, headers=headers)
