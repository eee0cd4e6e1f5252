"""ARQ's own job rate: a worker with vidhook's worker settings whose one function does nothing.

    NOOP_QUEUE=bench:noop REDIS_URL=… (and the rest) .venv/bin/python -m bench.noop_worker

The dispatch figure is divided by this worker's rate, measured in the same run, on the same
Redis, with the same `max_jobs`, `poll_delay`, `keep_result`, event loop and log level.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import uvloop
from arq.connections import RedisSettings
from arq.worker import Worker, func

from service import tasks
from service.cli import load_settings


async def noop(ctx: dict[str, Any], job_id: str) -> str:
    return "noop"


def main() -> None:
    settings = load_settings()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.set_event_loop(uvloop.new_event_loop())
    Worker(
        functions=[func(noop, name="noop", max_tries=1, timeout=60, keep_result=3600)],
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
