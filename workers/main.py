"""The ARQ worker: which functions it runs, with what limits, against which Redis."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from service import tasks
from service.settings import Settings
from workers.context import on_shutdown, on_startup
from workers.dispatch import dispatch_job
from workers.notify import notify_job
from workers.results import fetch_result


def create_worker(settings: Settings, *, handle_signals: bool = True) -> Worker:
    """An ARQ Worker for vidhook's tasks; each function sets its own tries and timeout."""
    ctx: dict[str, Any] = {"settings": settings}
    return Worker(
        functions=[
            # max_tries is one above our own limit: the functions end the job themselves on
            # their last try, so ARQ never drops a job without it being marked failed.
            func(
                dispatch_job,
                max_tries=settings.dispatch_max_tries + 1,
                timeout=60,
                keep_result=3600,
            ),
            func(
                notify_job, max_tries=settings.callback_max_tries + 1, timeout=60, keep_result=3600
            ),
            # Polls fal for as long as a request runs: each try backs off up to
            # RETRY_MAX_DELAY_S, so this is days, not a failure budget.
            func(fetch_result, max_tries=1000, timeout=60, keep_result=3600),
        ],
        queue_name=settings.arq_queue_name,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        ctx=ctx,
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay_s,
        handle_signals=handle_signals,
        log_results=False,
        # JSON, as the Lua steps write them: a pickle planted in Redis is refused, not run.
        job_serializer=tasks.serialize,
        job_deserializer=tasks.deserialize,
    )
