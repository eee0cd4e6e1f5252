"""GET /v1/stats: the operations overview's numbers for the caller's scope (service/stats.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import admin_name, authenticate
from service.context import ApiContext


async def read_stats(request: Request) -> Response:
    """A tenant key: that tenant's numbers; an ADMIN_API_KEYS key: every tenant's."""
    ctx: ApiContext = request.app.state.ctx
    tenant = None if admin_name(request) is not None else await authenticate(request)
    answer = await ctx.stats.read(tenant, budget=ctx.settings.fal_max_in_flight)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
