"""GET /v1/jobs/{id}/input: the input a job was submitted with, exactly as fal receives it.

Not part of the job resource: an input can hold megabytes of data URIs, which every read of
the job and every callback would otherwise carry. Null once the job has ended: the store
drops the input then (service/completions.py), so only a live job's input can be shown.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import acting_tenant
from service.context import ApiContext
from service.errors import NotFound


async def get_job_input(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    job_id = request.path_params["job_id"]
    tenant, _ = await acting_tenant(request, job_id)
    job = await ctx.store.get(job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"No job {job_id!r}.")
    return JSONResponse(
        {"object": "job_input", "id": job.id, "endpoint": job.endpoint, "input": job.input}
    )
