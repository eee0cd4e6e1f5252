"""GET /v1/endpoints: what vidhook accepts, with input schemas and prices."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import authenticate
from service.catalog import ENDPOINTS, describe_endpoint, describe_passthrough
from service.context import ApiContext

_SAMPLE_SUFFIXES = {".jpg": "sample.jpg", ".jpeg": "sample.jpg", ".png": "sample.png"}


async def list_endpoints(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    await authenticate(request)
    endpoints = [describe_endpoint(spec, ctx.prices) for spec in ENDPOINTS.values()]
    base = ctx.settings.example_media_base_url
    if base is not None:
        for entry in endpoints:
            entry["example_input"] = _local_samples(entry["example_input"], str(base).rstrip("/"))
    return JSONResponse(
        {
            "endpoints": endpoints,
            "passthrough": describe_passthrough(ctx.settings.allowed_endpoint_patterns),
        }
    )


def _local_samples(value: Any, base: str) -> Any:
    """The example with each file URL pointing at the sample of its kind under `base`.

    fal's example files live on the internet; a machine without it (`vidhook dev` offline)
    gets the simulator's bundled samples instead, so every example can be submitted as it is.
    """
    if isinstance(value, dict):
        return {key: _local_samples(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [_local_samples(item, base) for item in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        suffix = value[value.rfind(".") :].lower()
        return f"{base}/{_SAMPLE_SUFFIXES.get(suffix, 'sample.mp4')}"
    return value
