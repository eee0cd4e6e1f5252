"""The ceiling the API's figures are divided by: a bare Starlette endpoint, one Redis MULTI.

    REDIS_URL=redis://127.0.0.1:6379/0 PORT=8001 .venv/bin/python -m bench.ceiling

`POST /ceiling` reads the body, then in one MULTI/EXEC writes a job hash and pushes its id on
a list, and answers 202 with the id: the least any intake that records a job and queues it
can do. It runs under the same server settings as `vidhook api` (uvicorn, uvloop, httptools,
no access log), so the ratio vidhook / ceiling is what vidhook's own code costs.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KEY_PREFIX = "ceiling:"


def create_app(redis_url: str) -> Starlette:
    """The ceiling app; its Redis pool opens at start-up, as the API's does."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(redis_url, max_connections=200)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    async def ceiling(request: Request) -> Response:
        body = await request.body()
        job_id = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        async with request.app.state.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                f"{KEY_PREFIX}job:{job_id}",
                mapping={"id": job_id, "status": "queued", "created_at_ms": now_ms, "body": body},
            )
            pipe.lpush(f"{KEY_PREFIX}queue", job_id)
            await pipe.execute()
        return JSONResponse({"id": job_id, "status": "queued"}, status_code=202)

    return Starlette(routes=[Route("/ceiling", ceiling, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    import uvicorn

    uvicorn.run(
        create_app(os.environ["REDIS_URL"]),
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8001")),
        # The settings `vidhook api` runs with (service/cli.py).
        loop="uvloop",
        http="httptools",
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
