"""fal's queue API served by vidhook under /fal/, for fal's own clients (fal-protocol.md §1).

    POST /fal/{endpoint id}[?fal_webhook=…]              submit (200, fal's receipt)
    GET  /fal/{app}/requests/{id}/status[?logs=1]        202 IN_QUEUE/IN_PROGRESS, 200 COMPLETED
    GET  /fal/{app}/requests/{id}/status/stream          the same statuses as server-sent events
    GET  /fal/{app}/requests/{id}[/response]             the result, or the request's error
    PUT  /fal/{app}/requests/{id}/cancel                 202 / 400 ALREADY_COMPLETED / 404

`Authorization: Key <vidhook API key>` names the tenant. A submit goes through the same intake
as POST /v1/jobs, so the request id is the vidhook job id. The same calls arrive from
/fal/proxy with the path taken from `x-fal-target-url`; both parse into a `QueueCall`.
Refusals are rendered by `service.routes.fal_errors`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from service import fal_view
from service.auth import tenant_for
from service.bodies import read_json
from service.cancellation import cancel_job
from service.context import ApiContext
from service.domain_errors import JobNotFound
from service.errors import NotFound, Unauthorized
from service.fal_view import REQUEST_ID_HEADER, RequestUrls
from service.intake import accept_job
from service.jobs import CallbackFormat, Job, dispatch_task_id

# Key is what fal's clients send; Bearer is what /v1 and the proxy take. Both name a vidhook key.
DOOR_SCHEMES = frozenset({"key", "bearer"})
_TRUE_FLAGS = frozenset({"1", "true", "True"})
# Until the store publishes changes, the stream polls it; fal's JS client gives up on a
# stream that is silent for 15 s, so an unchanged status is repeated well before that.
STREAM_POLL_S = 0.25
STREAM_REPEAT_S = 5.0

_REQUEST_PATH = re.compile(
    r"^(?P<app>.+?)/requests/(?P<request_id>[^/]+)(?P<op>/status/stream|/status|/cancel|/response)?$"
)


@dataclass(frozen=True, slots=True)
class QueueCall:
    """One call of fal's queue protocol: `op` is submit, status, stream, result or cancel."""

    op: str
    target: str  # the endpoint id (submit) or the app prefix of a request path
    request_id: str = ""


def parse_queue_call(method: str, path: str) -> QueueCall | None:
    """The queue call a method and path (no leading slash) make, or None if they make none."""
    path = path.strip("/")
    match = _REQUEST_PATH.match(path)
    if match is None:
        return QueueCall("submit", path) if method == "POST" and path.count("/") >= 1 else None
    op = {
        "/status/stream": "stream",
        "/status": "status",
        "/cancel": "cancel",
        None: "result",
        "/response": "result",
    }[match["op"]]
    expected_method = {"cancel": "PUT"}.get(op, "GET")
    if method != expected_method:
        return None
    return QueueCall(op, match["app"], match["request_id"])


async def door_tenant(request: Request) -> str:
    tenant = await tenant_for(request, DOOR_SCHEMES)
    if tenant is None:
        raise Unauthorized("Send `Authorization: Key <vidhook API key>` (your FAL_KEY setting).")
    return tenant


async def serve(request: Request) -> Response:
    """The /fal/{path} door: fal's queue protocol at fal's own paths."""
    call = parse_queue_call(request.method, request.path_params["path"])
    if call is None:
        raise NotFound("No such queue call.")
    # root_path ends with the door's mount point ("/fal"): answers name URLs under it.
    base_url = str(request.url.replace(path=request.scope.get("root_path", ""), query=""))
    return await answer(request, await door_tenant(request), call, base_url, request.query_params)


async def answer(
    request: Request, tenant: str, call: QueueCall, base_url: str, query: Mapping[str, str]
) -> Response:
    """Carry out one queue call for `tenant`; URLs in answers are built under `base_url`."""
    ctx: ApiContext = request.app.state.ctx
    if call.op == "submit":
        return await _submit(request, ctx, tenant, call.target, base_url, query)
    job = await _job(ctx, tenant, call)
    urls = RequestUrls.under(base_url, job)
    headers = {REQUEST_ID_HEADER: job.id}
    with_logs = query.get("logs", "0") in _TRUE_FLAGS
    if call.op == "status":
        status = fal_view.status(
            job, urls, queue_position=await _position(ctx, job), with_logs=with_logs
        )
        return JSONResponse(status.body, status.status_code, headers)
    if call.op == "stream":
        return StreamingResponse(
            _status_events(ctx, tenant, call, urls, with_logs),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    if call.op == "result":
        result = fal_view.result(job)
        return JSONResponse(result.body, result.status_code, headers)
    await cancel_job(ctx, tenant, job.id)
    return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202, headers)


async def _submit(
    request: Request,
    ctx: ApiContext,
    tenant: str,
    endpoint: str,
    base_url: str,
    query: Mapping[str, str],
) -> Response:
    fal_input = await read_json(request, ctx.settings.max_request_bytes)
    # The same job request POST /v1/jobs takes, so the same checks refuse the same inputs.
    job_request: dict[str, Any] = {"endpoint": endpoint, "input": fal_input}
    webhook = query.get("fal_webhook")
    if webhook is not None:
        job_request["callback_url"] = webhook
    accepted = await accept_job(
        ctx,
        tenant,
        job_request,
        request.headers.get("idempotency-key"),
        callback_format=CallbackFormat.FAL,
    )
    job = accepted.job
    position = await _position(ctx, job)
    receipt = fal_view.submitted(job, RequestUrls.under(base_url, job), position or 0)
    return JSONResponse(receipt, 200, {REQUEST_ID_HEADER: job.id})


async def _job(ctx: ApiContext, tenant: str, call: QueueCall) -> Job:
    job = await ctx.store.get(call.request_id)
    if job is None or job.tenant != tenant or not fal_view.names_job(call.target, job):
        raise JobNotFound(call.request_id)
    return job


async def _position(ctx: ApiContext, job: Job) -> int | None:
    if fal_view.fal_status(job) != "IN_QUEUE":
        return None
    return await ctx.store.queue_position(dispatch_task_id(job.id))


async def _status_events(
    ctx: ApiContext, tenant: str, call: QueueCall, urls: RequestUrls, with_logs: bool
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    last_sent, last_at = "", 0.0
    while True:
        try:
            job = await _job(ctx, tenant, call)
        except JobNotFound:
            return  # past its retention while the stream was open
        status = fal_view.status(
            job, urls, queue_position=await _position(ctx, job), with_logs=with_logs
        )
        data = json.dumps(status.body, separators=(",", ":"))
        if data != last_sent or loop.time() - last_at >= STREAM_REPEAT_S:
            yield f"data: {data}\n\n"
            last_sent, last_at = data, loop.time()
        if status.body["status"] == "COMPLETED":
            return
        await asyncio.sleep(STREAM_POLL_S)
