"""The ARQ worker: which functions it runs, with what limits, against which Redis."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from service.settings import Settings
from workers.context import on_shutdown, on_startup
from workers.deadlines import sweep_jobs
from workers.dispatch import dispatch_job
from workers.limits import ARQ_TIMEOUT_MARGIN_S, retry_on_timeout
from workers.notify import notify_job
from workers.results import fetch_result
from workers.settle import settle_submit

# Each task's own time limit (workers/limits.py); ARQ's is a margin above it.
TASK_TIMEOUT_S = 50.0


def polling_max_tries(settings: Settings) -> int:
    """Tries enough for a task that polls until the job's deadline: each Retry waits at least
    half of RETRY_MAX_DELAY_S once backed off, so this outlasts JOB_DEADLINE_S with room."""
    return int(settings.job_deadline_s / (settings.retry_max_delay_s * 0.5)) + 200


def create_worker(settings: Settings, *, handle_signals: bool = True) -> Worker:
    """An ARQ Worker for vidhook's tasks; each function sets its own tries and timeout."""
    ctx: dict[str, Any] = {"settings": settings}
    limited = retry_on_timeout(TASK_TIMEOUT_S)
    arq_timeout_s = TASK_TIMEOUT_S + ARQ_TIMEOUT_MARGIN_S
    polling_tries = polling_max_tries(settings)
    return Worker(
        functions=[
            # max_tries is one above our own limit: the functions end the job themselves on
            # their last try, so ARQ never drops a job without it being marked failed.
            func(
                limited(dispatch_job),
                name="dispatch_job",
                max_tries=settings.dispatch_max_tries + 1,
                timeout=arq_timeout_s,
                keep_result=3600,
            ),
            func(
                limited(notify_job),
                name="notify_job",
                max_tries=settings.callback_max_tries + 1,
                timeout=arq_timeout_s,
                keep_result=3600,
            ),
            # Both poll fal for as long as a request may run: bounded by the job's deadline
            # (the sweep ends the job then), not by a count of tries.
            func(
                limited(fetch_result),
                name="fetch_result",
                max_tries=polling_tries,
                timeout=arq_timeout_s,
                keep_result=3600,
            ),
            # No result kept: a later unclear submit of the same job can enqueue it again.
            func(
                limited(settle_submit),
                name="settle_submit",
                max_tries=polling_tries,
                timeout=arq_timeout_s,
                keep_result=0,
            ),
        ],
        cron_jobs=[
            cron(
                sweep_jobs,
                name="sweep_jobs",
                second=set(range(0, 60, settings.deadline_sweep_interval_s)),
                run_at_startup=True,
                timeout=300,
                keep_result=0,
            )
        ],
        queue_name=settings.arq_queue_name,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        ctx=ctx,
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay_s,
        handle_signals=handle_signals,
        # On SIGTERM: stop taking tasks, let running ones finish for up to the grace period
        # (Kubernetes' terminationGracePeriodSeconds is set above it), then cancel the rest,
        # which ARQ re-queues.
        job_completion_wait=int(settings.shutdown_grace_s),
        log_results=False,
    )
