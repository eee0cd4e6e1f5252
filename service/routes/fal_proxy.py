"""/fal/proxy: fal's client proxy protocol, as @fal-ai/client's `proxyUrl` mode speaks it.

The client sends each call to the proxy with the URL it meant in `x-fal-target-url`, and the
proxy adds the credentials. Here the caller names its tenant with `Authorization: Bearer
<vidhook key>` (the JS client adds it through `requestMiddleware`), and:

- queue calls (`queue.fal.run`) take vidhook's durable path, exactly as at /fal/{…}: a submit
  becomes a vidhook job, a status or result reads it;
- sync runs (`fal.run`) are refused: they would bypass the queue, its checks and its budget;
- other https URLs on fal's hosts (`*.fal.ai`, `*.fal.media`: storage uploads) are forwarded
  with the server's FAL_KEY, the same body limit, no redirects followed;
- any other target is refused (412): forwarding it would make vidhook an open proxy.
"""

from __future__ import annotations

import re

import httpx
from starlette.requests import Request
from starlette.responses import Response

from service.auth import tenant_for
from service.bodies import read_limited
from service.context import ApiContext
from service.errors import (
    BadGateway,
    BadRequest,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)
from service.routes.fal_queue import DOOR_SCHEMES, answer, parse_queue_call

TARGET_URL_HEADER = "x-fal-target-url"
QUEUE_HOSTS = frozenset({"queue.fal.run", "queue.falrun.com"})
RUN_HOSTS = frozenset({"fal.run", "falrun.com"})
_FORWARDABLE_HOST = re.compile(r"(^|\.)fal\.(ai|media)$")
_FORWARD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_REQUEST_HEADERS = ("accept", "content-type", "user-agent")
_RESPONSE_HEADERS = ("content-type",)


async def proxy(request: Request) -> Response:
    tenant = await tenant_for(request, DOOR_SCHEMES)
    if tenant is None:
        raise Unauthorized("Send `Authorization: Bearer <vidhook API key>` (requestMiddleware).")
    target = request.headers.get(TARGET_URL_HEADER)
    if not target:
        raise BadRequest(f"Missing the {TARGET_URL_HEADER} header.")
    try:
        url = httpx.URL(target)
    except httpx.InvalidURL as exc:
        raise BadRequest(f"The {TARGET_URL_HEADER} header is not a URL.") from exc
    host = url.host.lower()
    if url.scheme != "https" or url.userinfo or not host:
        raise PreconditionFailed(f"Invalid {TARGET_URL_HEADER} header: an https fal URL only.")
    if host in QUEUE_HOSTS:
        call = parse_queue_call(request.method, url.path)
        if call is None:
            raise NotFound("No such queue call.")
        return await answer(request, tenant, call, f"https://{host}", url.params)
    if host in RUN_HOSTS:
        raise Forbidden("Synchronous runs are not proxied; use the queue (subscribe or submit).")
    if not _FORWARDABLE_HOST.search(host) or url.port not in (None, 443):
        raise PreconditionFailed(f"Invalid {TARGET_URL_HEADER} header: not a fal host.")
    return await _forward(request, url)


async def _forward(request: Request, url: httpx.URL) -> Response:
    ctx: ApiContext = request.app.state.ctx
    body = await read_limited(request, ctx.settings.max_request_bytes)
    headers = {name: value for name in _REQUEST_HEADERS if (value := request.headers.get(name))}
    headers.update(
        (name, value)
        for name, value in request.headers.items()
        if name.startswith("x-fal-") and name != TARGET_URL_HEADER
    )
    headers["authorization"] = f"Key {ctx.settings.fal_key.get_secret_value()}"
    try:
        upstream = await ctx.http.request(
            request.method,
            url,
            content=body,
            headers=headers,
            timeout=_FORWARD_TIMEOUT,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise BadGateway(f"fal did not answer: {type(exc).__name__}") from exc
    kept = {
        name: value
        for name, value in upstream.headers.items()
        if name in _RESPONSE_HEADERS or name.startswith("x-fal-")
    }
    return Response(upstream.content, upstream.status_code, headers=kept)
