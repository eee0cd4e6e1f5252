"""POST /v1/jobs, GET /v1/jobs/{id}, POST /v1/jobs/{id}/cancel: thin handlers over the domain.

Domain refusals propagate to the app's handler (`service.errors.handle_domain_error`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import authenticate
from service.bodies import read_json
from service.cancellation import CancelOutcome, cancel_job
from service.context import ApiContext
from service.errors import NotFound
from service.intake import accept_job
from service.jobs import Job


async def create_job(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = authenticate(request)
    body = await read_json(request, ctx.settings.max_request_bytes)
    accepted = await accept_job(ctx, tenant, body, request.headers.get("idempotency-key"))
    if accepted.replayed:
        return _job_response(accepted.job, status_code=200, replayed=True)
    return _job_response(accepted.job, status_code=202)


async def get_job(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = authenticate(request)
    job_id = request.path_params["job_id"]
    job = await ctx.store.get(job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"No job {job_id!r}.")
    return _job_response(job, status_code=200)


async def cancel(request: Request) -> Response:
    """200 with the job once cancelled; 202 while fal is asked to; 409 if it already ended."""
    ctx: ApiContext = request.app.state.ctx
    tenant = authenticate(request)
    cancelled = await cancel_job(ctx, tenant, request.path_params["job_id"])
    status_code = 200 if cancelled.outcome is CancelOutcome.CANCELLED else 202
    return _job_response(cancelled.job, status_code=status_code)


def _job_response(job: Job, *, status_code: int, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job.to_resource(), status_code=status_code, headers=headers)
