"""The ARQ worker: which functions it runs, with what limits, against which Redis.

Timeouts come from what each step really waits for, because they also decide how soon a
killed worker's tasks run again: ARQ marks a task in progress for the longest function
timeout + 10 s, counted from the task's start, and nobody else may take it before that
expires. With the defaults (submit 15 s, callback 10 s, fal status/result 5 s each) the
longest step is dispatch's 18 s, so a SIGKILLed worker's tasks resume within 28 s.

ARQ drops a task that hits its timeout (no retry). So each task also runs under a budget one
second shorter, and overrunning it is a Retry: every step is safe to run again (an unclear
submit waits out its grace period), and a slow moment never loses a job. ARQ likewise drops a
task that raises, so a Redis outage in the middle of a step (a lost connection, a Redis
restarting from its AOF) is a Retry too, not a failure.
"""

from __future__ import annotations

import asyncio
import functools
import math
import signal
from typing import Any

from arq import Retry
from arq.connections import RedisSettings
from arq.cron import cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import tasks
from service.settings import Settings
from workers.admission import probe_fal, wake_dispatch
from workers.context import on_shutdown, on_startup
from workers.deadlines import sweep_jobs
from workers.dispatch import dispatch_job
from workers.keep_input import keep_input, keep_inputs
from workers.mirror import mirror_job
from workers.notify import deliver_callback, notify_job
from workers.results import fetch_result
from workers.settle import settle_submit

# Redis round trips before and after the upstream call, and the event loop's own latency.
STEP_MARGIN_S = 3.0
# How much sooner than ARQ's timeout a task's own budget runs out (and it retries).
BUDGET_HEADROOM_S = 1.0
OVERRUN_RETRY_DELAY_S = 1.0
# How long ARQ keeps a finished task's result. While it exists, the same task id is not
# enqueued again (ARQ's rule, kept by store.enqueue); the job's own state guards every step
# beyond that, so a minute covers the races and a job does not carry the results for an hour
# (they were ~0.8 KB of the ~3 KB a finished job held in Redis).
TASK_RESULT_KEEP_S = 60
# ARQ's in-progress mark outlives the longest function timeout by this much.
ARQ_IN_PROGRESS_EXTRA_S = 10.0
# ARQ tries of one callback attempt task (see create_worker).
DELIVERY_ATTEMPT_MAX_TRIES = 25


def function_timeouts_s(settings: Settings) -> dict[str, float]:
    """Each task's ARQ timeout: its upstream calls' own deadlines plus a margin."""
    return {
        "dispatch_job": settings.fal_submit_timeout_s + STEP_MARGIN_S,
        # One attempt: one POST (its own deadline covers DNS, connect and response).
        "deliver_callback": settings.callback_timeout_s + STEP_MARGIN_S,
        "notify_job": STEP_MARGIN_S,
        # A status GET, then (once COMPLETED) a result GET.
        "fetch_result": 2 * settings.fal_status_timeout_s + STEP_MARGIN_S,
        # mirror_job enforces MIRROR_TIMEOUT_S itself (then retries, or gives up and
        # notifies); ARQ's timeout is the backstop. It counts here too: ARQ holds every
        # task of a killed worker for the longest function timeout, so a long mirror budget
        # slows every kill recovery (see README).
        "mirror_job": settings.mirror_timeout_s + STEP_MARGIN_S,
        # Small objects written to the same store, each under the same bound; a run that
        # overruns its budget is retried, what it kept stays kept.
        "keep_input": settings.mirror_timeout_s + STEP_MARGIN_S,
        "keep_inputs": settings.mirror_timeout_s + STEP_MARGIN_S,
        # A listing lookup at fal's Platform API, or a resubmit: a try that needs both and
        # runs out of its budget is retried (and the lookup comes first again).
        "settle_submit": max(2 * settings.fal_status_timeout_s, settings.fal_submit_timeout_s)
        + STEP_MARGIN_S,
        # A status GET for a request id that cannot exist; admitting is Redis only.
        "probe_fal": settings.fal_status_timeout_s + STEP_MARGIN_S,
        "wake_dispatch": STEP_MARGIN_S,
        # The deadline sweep: bounded like a step, so it never lengthens kill recovery; what
        # it did not reach in one run it reaches in the next.
        "sweep_jobs": 15.0,
    }


def polling_max_tries(settings: Settings) -> int:
    """Tries enough for a task that polls until the job's deadline: each Retry waits at least
    half of RETRY_MAX_DELAY_S once backed off, so this outlasts JOB_DEADLINE_S with room."""
    return int(settings.job_deadline_s / (settings.retry_max_delay_s * 0.5)) + 200


def kill_recovery_s(settings: Settings) -> float:
    """How long after it started a killed worker's task can at most wait to run again."""
    return max(function_timeouts_s(settings).values()) + ARQ_IN_PROGRESS_EXTRA_S


def survives_redis_outage(function: WorkerCoroutine) -> WorkerCoroutine:
    """`function`, turned into a Retry when Redis cannot be reached mid-step.

    ARQ records any exception but Retry as the task's final failure and never runs it again;
    a callback or mirror task lost that way is not found again by the deadline sweep (its job
    is terminal). Every step is safe to run twice, so running it again is right.
    """

    @functools.wraps(function)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await function(ctx, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise Retry(defer=OVERRUN_RETRY_DELAY_S) from exc

    return run


def within_budget(function: WorkerCoroutine, budget_s: float) -> WorkerCoroutine:
    """`function`, turned into a Retry when it runs longer than `budget_s` or Redis is away."""

    @functools.wraps(function)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        budget = asyncio.timeout(budget_s)
        try:
            async with budget:
                return await function(ctx, *args, **kwargs)
        except TimeoutError as exc:
            if not budget.expired():
                raise
            raise Retry(defer=OVERRUN_RETRY_DELAY_S) from exc

    return survives_redis_outage(run)


class VidhookWorker(Worker):
    """ARQ's Worker, with a shutdown that always runs `on_shutdown`."""

    async def close(self) -> None:
        # ARQ's close() gathers the worker's tasks and, when one was cancelled at shutdown
        # (it outlived SHUTDOWN_GRACE_S), raises CancelledError before `on_shutdown`: the fal
        # and callback clients and the metrics server would be left open. Their outcome is
        # ARQ's business (a cancelled task is back on the queue); here they only must be done.
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        await super().close()


def create_worker(settings: Settings, *, handle_signals: bool = True) -> Worker:
    """An ARQ Worker for vidhook's tasks; each function sets its own tries and timeout."""
    ctx: dict[str, Any] = {"settings": settings}
    timeouts = function_timeouts_s(settings)
    polling_tries = polling_max_tries(settings)

    def bounded(function: WorkerCoroutine) -> WorkerCoroutine:
        return within_budget(function, timeouts[function.__qualname__] - BUDGET_HEADROOM_S)

    return VidhookWorker(
        functions=[
            # max_tries is one above our own limit: the functions end the job themselves on
            # their last try, so ARQ never drops a job without it being marked failed.
            func(
                bounded(dispatch_job),
                max_tries=settings.dispatch_max_tries + 1,
                timeout=timeouts["dispatch_job"],
                keep_result=TASK_RESULT_KEEP_S,
            ),
            # Each attempt is a task of its own and the schedule's place is in Redis: ARQ's
            # tries only count overruns and killed workers. Should ARQ drop one anyway, the
            # sweep enqueues the delivery's due attempt again.
            func(
                bounded(deliver_callback),
                max_tries=DELIVERY_ATTEMPT_MAX_TRIES,
                timeout=timeouts["deliver_callback"],
                keep_result=TASK_RESULT_KEEP_S,
            ),
            func(
                bounded(notify_job),
                max_tries=DELIVERY_ATTEMPT_MAX_TRIES,
                timeout=timeouts["notify_job"],
                keep_result=TASK_RESULT_KEEP_S,
            ),
            func(
                survives_redis_outage(mirror_job),
                max_tries=settings.mirror_max_tries + 1,
                timeout=timeouts["mirror_job"],
                keep_result=TASK_RESULT_KEEP_S,
            ),
            # No result kept, so that the next job's enqueue finds the id free at once. It
            # retries until the last failed copy is due (each job counts its own failures).
            func(
                bounded(keep_inputs),
                max_tries=polling_max_tries(settings),
                timeout=timeouts["keep_inputs"],
                keep_result=0,
            ),
            func(
                bounded(keep_input),
                max_tries=polling_max_tries(settings),
                timeout=timeouts["keep_input"],
                keep_result=0,
            ),
            # Both poll fal for as long as a request may run: bounded by the job's deadline
            # (the sweep ends the job then), not by a count of tries.
            func(
                bounded(fetch_result),
                max_tries=polling_tries,
                timeout=timeouts["fetch_result"],
                keep_result=TASK_RESULT_KEEP_S,
            ),
            # No result kept: a later unclear submit of the same job can enqueue it again.
            func(
                bounded(settle_submit),
                max_tries=polling_tries,
                timeout=timeouts["settle_submit"],
                keep_result=0,
            ),
            # Fixed ids, no result kept: the next pause (or slow-down) can enqueue them again.
            func(
                bounded(probe_fal),
                max_tries=polling_tries,
                timeout=timeouts["probe_fal"],
                keep_result=0,
            ),
            func(
                bounded(wake_dispatch),
                max_tries=3,
                timeout=timeouts["wake_dispatch"],
                keep_result=0,
            ),
        ],
        cron_jobs=[
            cron(
                sweep_jobs,
                name="sweep_jobs",
                second=set(range(0, 60, settings.deadline_sweep_interval_s)),
                run_at_startup=True,
                timeout=timeouts["sweep_jobs"],
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
        # On SIGTERM: stop picking up tasks, let running ones finish within the grace, then
        # cancel the rest (ARQ puts a cancelled task back on the queue at once).
        job_completion_wait=math.ceil(settings.shutdown_grace_s),
        log_results=False,
        # JSON, as the Lua steps write them: a pickle planted in Redis is refused, not run.
        job_serializer=tasks.serialize,
        job_deserializer=tasks.deserialize,
    )
