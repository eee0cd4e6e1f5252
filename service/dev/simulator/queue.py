"""The queue: accepts requests, runs at most `concurrency` at once, records how each ends.

Like fal, a submit is never refused for capacity; the excess waits IN_QUEUE in submit order.
An explicit FIFO (rather than tasks blocked on a semaphore) makes `queue_position` exact and
lets a queued request be cancelled without ever having started.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from enum import StrEnum
from typing import Any

from service.dev.simulator import payloads
from service.dev.simulator.errors import Failure, InputRejected
from service.dev.simulator.inference import Inference
from service.dev.simulator.render import RenderError
from service.dev.simulator.requests import QueuedRequest, Status
from service.dev.simulator.rules import EndpointRule
from service.dev.simulator.webhooks import WebhookSender

logger = logging.getLogger(__name__)


class CancelResult(StrEnum):
    """Values of fal's cancel answer `status` field."""

    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


class RequestQueue:
    """All requests of this process, in memory; drives each from IN_QUEUE to COMPLETED."""

    def __init__(self, *, concurrency: int, inference: Inference, webhooks: WebhookSender) -> None:
        self._concurrency = concurrency
        self._inference = inference
        self._webhooks = webhooks
        self._requests: dict[str, QueuedRequest] = {}
        self._waiting: deque[QueuedRequest] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def submit(
        self, rule: EndpointRule, body: dict[str, Any], webhook_url: str | None
    ) -> QueuedRequest:
        """Enqueue a request (input is checked later, as fal does) and start it if there is room."""
        request = QueuedRequest(str(uuid.uuid4()), rule, body, webhook_url)
        self._requests[request.request_id] = request
        self._waiting.append(request)
        logger.info("request %s submitted to %s", request.request_id, rule.endpoint_id)
        self._dispatch()
        return request

    def get(self, request_id: str) -> QueuedRequest | None:
        return self._requests.get(request_id)

    def all(self) -> list[QueuedRequest]:
        """Every request this process has seen, for the Platform API's listing."""
        return list(self._requests.values())

    def queue_position(self, request: QueuedRequest) -> int:
        """How many requests wait ahead of this one (0 = next to start)."""
        try:
            return self._waiting.index(request)
        except ValueError:
            return 0

    def cancel(self, request_id: str) -> CancelResult:
        """fal's cancel: a queued request never runs; a running one is left to finish."""
        request = self._requests.get(request_id)
        if request is None:
            return CancelResult.NOT_FOUND
        if request.status is Status.COMPLETED:
            return CancelResult.ALREADY_COMPLETED
        if request.status is Status.IN_QUEUE:
            self._waiting.remove(request)
            request.log("Request cancelled while in queue", level="WARNING")
            self._complete(request, failure=Failure.cancelled())
        else:
            # Veo runs at a partner; like fal there, the job completes (and bills) anyway.
            request.log("Cancellation requested; the running job will still complete")
        return CancelResult.REQUESTED

    async def aclose(self) -> None:
        """Cancel every render and webhook still in flight and wait for them to stop."""
        # Set first: a cancelled render's cleanup must not start the next queued request.
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _dispatch(self) -> None:
        while not self._closing and self._running < self._concurrency and self._waiting:
            request = self._waiting.popleft()
            self._running += 1
            request.status = Status.IN_PROGRESS
            request.started_at = time.monotonic()
            self._spawn(self._run(request))

    async def _run(self, request: QueuedRequest) -> None:
        try:
            output = await self._inference.run(request)
        except InputRejected as rejected:
            request.log("Input validation failed", level="ERROR")
            self._complete(request, failure=Failure.validation(rejected.details))
        except (RenderError, TimeoutError) as exc:
            logger.error("request %s: render failed: %s", request.request_id, exc)
            request.log("Video generation failed", level="ERROR")
            self._complete(request, failure=Failure.internal())
        except Exception:
            # A simulator bug: answer like a crashed fal runner instead of hanging IN_PROGRESS.
            logger.exception("request %s: unexpected error", request.request_id)
            self._complete(request, failure=Failure.runner_error())
        else:
            self._complete(request, output=output)
        finally:
            self._running -= 1
            self._dispatch()

    def _complete(
        self,
        request: QueuedRequest,
        *,
        output: dict[str, Any] | None = None,
        failure: Failure | None = None,
    ) -> None:
        request.output = output
        request.failure = failure
        request.completed_at = time.monotonic()
        request.status = Status.COMPLETED
        logger.info(
            "request %s completed: %s",
            request.request_id,
            "ok" if failure is None else failure.error_type,
        )
        if request.webhook_url is not None:
            self._spawn(self._notify(request, request.webhook_url))

    async def _notify(self, request: QueuedRequest, url: str) -> None:
        outcome = await self._webhooks.deliver(url, request.request_id, payloads.webhook(request))
        request.webhook_outcome = outcome.value

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            coro.close()
            return
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_crash)


def _report_crash(task: asyncio.Task[None]) -> None:
    # A bug must be loud, not a request stuck IN_PROGRESS with nothing in the log.
    if not task.cancelled() and task.exception() is not None:
        logger.error("simulator task crashed", exc_info=task.exception())
