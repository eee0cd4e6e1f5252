"""GET /healthz (the process lives) and GET /readyz (it can do its work), cheap to probe often.

/healthz touches nothing: a liveness probe that failed on a Redis outage would restart every
API pod at once and fix nothing. /readyz answers 503 unless Redis answers and fal's webhook
keys are loaded (fetched once, then cached: a probe every second costs one Redis round trip).
It also reports whether dispatch is paused; that does not make the API unready, since intake
and fal's webhooks must keep being answered while submits wait.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.budgets import pause_from
from service.context import ApiContext
from service.fal_webhooks import WebhookRejected
from service.jobs import iso_from_ms

READY_REDIS_TIMEOUT_S = 1.0
READY_JWKS_TIMEOUT_S = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    checks: dict[str, str] = {}
    details: dict[str, Any] = {}
    try:
        async with asyncio.timeout(READY_REDIS_TIMEOUT_S):
            async with ctx.redis.pipeline(transaction=False) as pipe:
                pipe.ping()
                pipe.get(ctx.store.keys.dispatch_paused)
                _, paused = await pipe.execute()
        checks["redis"] = "ok"
        checks["dispatch"] = "paused" if paused else "running"
        pause = pause_from(paused)
        if pause is not None:
            # Why: fal refused our key (401/403); a probe resumes dispatch by itself.
            details["dispatch_paused"] = {**pause.as_dict(), "since": iso_from_ms(pause.since_ms)}
    except (RedisError, OSError, TimeoutError):
        checks["redis"] = "down"
    if ctx.jwks is not None:
        try:
            async with asyncio.timeout(READY_JWKS_TIMEOUT_S):
                checks["fal_keys"] = "ok" if await ctx.jwks.keys() else "empty"
        except (WebhookRejected, TimeoutError):
            checks["fal_keys"] = "unavailable"
    ready = checks.get("redis") == "ok" and checks.get("fal_keys", "ok") == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks, **details},
        status_code=200 if ready else 503,
    )
