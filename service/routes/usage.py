"""GET /v1/usage: the caller's estimated spend today and this month (UTC), against its limits."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import authenticate
from service.context import ApiContext
from service.store import now_ms


async def read_usage(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    tenant = await authenticate(request)
    answer = await ctx.budgets.usage(tenant, now_ms())
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
