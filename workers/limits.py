"""Running a task under its own time limit, so that running out of time is a retry.

ARQ cancels a function that outlives its `timeout` and records a plain failure: no retry,
and the vidhook job the task was moving on stays active. Each function is therefore run
under a limit of its own, a little shorter than ARQ's, and running out of it raises Retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from arq import Retry
from arq.typing import WorkerCoroutine

logger = logging.getLogger("vidhook.limits")

# ARQ's own timeout is this much longer than ours, so ours always fires first.
ARQ_TIMEOUT_MARGIN_S = 10.0

Task = Callable[..., Awaitable[str]]


def retry_on_timeout(
    timeout_s: float, *, retry_in_s: float = 1.0
) -> Callable[[Task], WorkerCoroutine]:
    """Wrap an ARQ function: past `timeout_s` it is cancelled and retried in `retry_in_s`."""

    def wrap(function: Task) -> WorkerCoroutine:
        @functools.wraps(function)
        async def limited(ctx: dict[str, Any], *args: Any) -> str:
            try:
                async with asyncio.timeout(timeout_s):
                    return await function(ctx, *args)
            except TimeoutError as exc:
                name = function.__name__
                logger.warning("%s%r ran out of its %.0fs: retrying", name, args, timeout_s)
                raise Retry(defer=retry_in_s) from exc

        return cast(WorkerCoroutine, limited)

    return wrap
