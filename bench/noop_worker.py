"""ARQ's own job rate: a worker with vidhook's worker settings whose functions do (almost) nothing.

    NOOP_QUEUE=bench:noop REDIS_URL=… (and the rest) .venv/bin/python -m bench.noop_worker

The dispatch figure is divided by this worker's rate, measured in the same run, on the same
Redis, with the same `max_jobs`, `poll_delay`, `keep_result`, event loop, log level and log
format (ARQ logs two lines per task: formatted as vidhook's JSON lines, as in the worker), and
its start-up heap frozen as the worker's is (`gc.freeze`, workers/context.py).
`noop` does nothing; `post` makes the one POST a submit is, with the `httpx.AsyncClient`
settings of vidhook's worker (workers/context.py), to NOOP_POST_URL (the zero-latency
bench/fakefal.py): the fair ceiling of a dispatch that must reach fal.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from typing import Any

import httpx
import uvloop
from arq.connections import RedisSettings
from arq.worker import Worker, func

from service import tasks
from service.cli import load_settings
from service.logs import configure_logging


async def noop(ctx: dict[str, Any], job_id: str) -> str:
    return "noop"


POST_BODY = json.dumps(
    {"prompt": "A lighthouse at dusk", "image_url": "https://example.com/a.jpg", "duration": "8s"}
).encode()


async def post(ctx: dict[str, Any], job_id: str) -> str:
    settings = ctx["settings"]
    response = await ctx["http"].post(
        f"{os.environ['NOOP_POST_URL']}/fal-ai/veo3.1/image-to-video",
        params={"fal_webhook": f"http://127.0.0.1:1/v1/fal/webhooks/{job_id}?token=x"},
        content=POST_BODY,
        headers={"Authorization": "Key bench", "Content-Type": "application/json"},
        timeout=httpx.Timeout(settings.fal_submit_timeout_s, connect=5.0),
    )
    return f"posted {response.status_code}"


async def startup(ctx: dict[str, Any]) -> None:
    # As workers/context.py builds the worker's one client.
    ctx["http"] = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
        trust_env=False,
    )
    gc.freeze()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_format == "json")
    asyncio.set_event_loop(uvloop.new_event_loop())
    Worker(
        functions=[
            func(noop, name="noop", max_tries=1, timeout=60, keep_result=3600),
            func(post, name="post", max_tries=1, timeout=60, keep_result=3600),
        ],
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"settings": settings},
        queue_name=os.environ.get("NOOP_QUEUE", "bench:noop"),
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay_s,
        handle_signals=True,
        log_results=False,
        job_serializer=tasks.serialize,
        job_deserializer=tasks.deserialize,
    ).run()


if __name__ == "__main__":
    main()
