"""GET /v1/endpoints: what vidhook accepts, with input schemas and prices."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import authenticate
from service.catalog import ENDPOINTS, describe_endpoint, describe_passthrough
from service.context import ApiContext


async def list_endpoints(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    await authenticate(request)
    return JSONResponse(
        {
            "endpoints": [describe_endpoint(spec, ctx.prices) for spec in ENDPOINTS.values()],
            "passthrough": describe_passthrough(ctx.settings.allowed_endpoint_patterns),
        }
    )
