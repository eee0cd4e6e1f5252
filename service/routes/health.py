"""GET /healthz: the process is up and its Redis answers."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.context import ApiContext


async def healthz(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    try:
        await ctx.store.ping()
    except RedisError:
        return JSONResponse({"status": "unavailable", "redis": "down"}, status_code=503)
    return JSONResponse({"status": "ok"})
