"""POST /v1/jobs and GET /v1/jobs/{id}: thin handlers over the store."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.bodies import read_json
from service.context import ApiContext, key_digest
from service.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from service.jobs import Job, dispatch_task_id
from service.ssrf import UnsafeTarget, check_url_syntax
from service.store import CreateOutcome, Task, now_ms
from service.validation import JobRequest, RequestInvalid, parse_job_request

MAX_IDEMPOTENCY_KEY_CHARS = 255


def authenticate(request: Request) -> str:
    """The tenant owning the request's bearer key; Unauthorized otherwise."""
    ctx: ApiContext = request.app.state.ctx
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    tenant = (
        ctx.tenants_by_key_digest.get(key_digest(key.strip()))
        if scheme.lower() == "bearer"
        else None
    )
    if tenant is None:
        raise Unauthorized("Send `Authorization: Bearer <API key>` with a key this service knows.")
    return tenant


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def _parse(ctx: ApiContext, body: Any) -> JobRequest:
    try:
        job_request = parse_job_request(
            body, allowed_endpoint_patterns=ctx.settings.allowed_endpoint_patterns
        )
    except RequestInvalid as exc:
        raise InvalidRequest(
            f"{len(exc.problems)} problem(s) in the request.",
            [
                {
                    "path": list(p.loc),
                    "message": p.msg,
                    "type": p.type,
                    **({"ctx": dict(p.ctx)} if p.ctx else {}),
                }
                for p in exc.problems
            ],
        ) from exc
    if job_request.callback_url:
        try:
            check_url_syntax(
                job_request.callback_url,
                allow_private_targets=ctx.settings.callback_allow_private_targets,
            )
        except UnsafeTarget as exc:
            raise InvalidRequest(
                "The callback URL is not allowed.",
                [{"path": ["callback_url"], "message": str(exc), "type": "unsafe_target"}],
            ) from exc
    return job_request


async def create_job(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = authenticate(request)
    body = await read_json(request, ctx.settings.max_request_bytes)
    job_request = _parse(ctx, body)
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidRequest(
            "The Idempotency-Key header is not valid.",
            [
                {
                    "path": ["headers", "Idempotency-Key"],
                    "message": f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters",
                    "type": "too_long",
                }
            ],
        )

    job_id = new_job_id()
    job = Job.queued(
        job_id,
        tenant,
        job_request.endpoint,
        job_request.input,
        callback_url=job_request.callback_url,
        metadata=job_request.metadata,
        estimated_cost_usd=ctx.prices.estimate(job_request.endpoint, job_request.input),
        created_at_ms=now_ms(),
    )
    fingerprint = ""
    if idempotency_key:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        fingerprint = hashlib.sha256(canonical).hexdigest()
    outcome, stored_id = await ctx.store.create(
        job_id,
        tenant,
        job.to_new_hash(),
        Task(dispatch_task_id(job_id), "dispatch_job", (job_id,)),
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )
    if outcome is CreateOutcome.KEY_REUSED:
        raise Conflict(
            "This Idempotency-Key was already used for a different request.", job_id=stored_id
        )
    if outcome is CreateOutcome.REPLAYED:
        replayed = await ctx.store.get(stored_id)
        if replayed is None or replayed.tenant != tenant:
            raise NotFound("The job this Idempotency-Key created no longer exists.")
        return _job_response(replayed, status_code=200, replayed=True)
    return _job_response(job, status_code=202)


async def get_job(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = authenticate(request)
    job_id = request.path_params["job_id"]
    job = await ctx.store.get(job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"No job {job_id!r}.")
    return _job_response(job, status_code=200)


def _job_response(job: Job, *, status_code: int, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job.to_resource(), status_code=status_code, headers=headers)
