"""Server-sent events: GET /v1/jobs/{id}/events (one job) and GET /v1/events (a tenant's jobs).

Each SSE event is one state change: `id:` its event-stream entry id (resume after it with
`Last-Event-ID`), `event: job.<status>`, `data:` the event as JSON (`JobEvent` in the OpenAPI
document; the terminal event of a job stream also carries the finished `job`). Comment lines
every SSE_HEARTBEAT_S keep proxies from closing a quiet stream. A job's stream closes after its
terminal event; any stream closes after SSE_MAX_S, and the client resumes with Last-Event-ID
(as EventSource does by itself), so that long-lived streams spread over API processes as
they come and go.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from service.auth import authenticate
from service.context import ApiContext
from service.errors import InvalidRequest, NotFound, Unavailable
from service.events import JobEvent
from service.streams import job_history

_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
_MAX_ID_PART = 2**64 - 1


def last_event_id(request: Request) -> str | None:
    """The `Last-Event-ID` header, checked to be an event-stream entry id (`<ms>-<seq>`)."""
    value = request.headers.get("last-event-id")
    if value is None or value == "":
        return None
    # Redis ids are two 64-bit numbers; the largest cannot be read "after" (XRANGE refuses).
    if not _EVENT_ID.fullmatch(value) or any(
        int(part) >= _MAX_ID_PART for part in value.split("-")
    ):
        raise InvalidRequest(
            "The Last-Event-ID header is not an event id.",
            [
                {
                    "path": ["headers", "Last-Event-ID"],
                    "message": "must be an event id as sent in `id:`, e.g. 1767312000000-0",
                    "type": "pattern",
                }
            ],
        )
    return value


def _sse(event: JobEvent, job: dict[str, Any] | None = None) -> ServerSentEvent:
    data = event.to_resource()
    if job is not None:
        data["job"] = job
    return ServerSentEvent(
        json.dumps(data, separators=(",", ":")),
        id=event.id,
        event=f"job.{event.to_status.value}",
    )


async def job_events(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = await authenticate(request)
    job_id = request.path_params["job_id"]
    after_id = last_event_id(request)
    job = await ctx.store.get(job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"No job {job_id!r}.")

    async def stream() -> AsyncIterator[ServerSentEvent]:
        history = job_history(ctx.store, ctx.waiters, job, after_id, max_s=ctx.settings.sse_max_s)
        async for event in history:
            finished = None
            if event.to_status.is_terminal:
                finished = await ctx.store.get(job_id)
            yield _sse(event, finished.to_resource() if finished else None)

    return EventSourceResponse(stream(), ping=ctx.settings.sse_heartbeat_s)


async def tenant_events(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = await authenticate(request)
    after_id = last_event_id(request)
    release = ctx.feeds.claim()
    if release is None:
        raise Unavailable(
            f"This process already serves {ctx.feeds.max_open} event streams; retry shortly."
        )
    try:
        # "From now on" is from this answer on: nothing after it is missed.
        cursor = after_id or await ctx.feeds.cursor_now()
    except BaseException:
        release()
        raise

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in ctx.feeds.events(tenant, cursor, max_s=ctx.settings.sse_max_s):
                yield _sse(event)
        finally:
            release()

    # The background task releases the slot too when the stream never started (a HEAD, or a
    # client gone before the first read); release() is idempotent.
    return EventSourceResponse(
        stream(), ping=ctx.settings.sse_heartbeat_s, background=BackgroundTask(release)
    )
