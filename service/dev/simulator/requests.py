"""One queued fal request as the simulator remembers it (in memory, for the process lifetime)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from service.dev.simulator.errors import Failure
from service.dev.simulator.rules import EndpointRule


class Status(StrEnum):
    """fal's queue states; there is no FAILED: failures are COMPLETED with an error."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(eq=False)  # identity, not field equality: the FIFO looks requests up by identity
class QueuedRequest:
    """State of one request from submit to completion, plus its webhook outcome."""

    request_id: str
    rule: EndpointRule
    body: dict[str, Any]
    webhook_url: str | None
    status: Status = Status.IN_QUEUE
    submitted_at: float = field(default_factory=time.monotonic)
    # Wall-clock submit time, for the Platform API's `sent_at` (monotonic times are durations).
    sent_at_unix: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    output: dict[str, Any] | None = None
    failure: Failure | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    webhook_outcome: str | None = None

    def log(self, message: str, level: str = "INFO") -> None:
        """Append one log line in fal's `{message, timestamp, level, source}` shape."""
        self.logs.append(
            {
                "message": message,
                "timestamp": datetime.now(UTC).isoformat(),
                "level": level,
                "source": "USER",
            }
        )

    def wall_time(self, monotonic_at: float | None) -> float | None:
        """A monotonic instant of this request's life as Unix time."""
        if monotonic_at is None:
            return None
        return self.sent_at_unix + (monotonic_at - self.submitted_at)

    @property
    def inference_time_s(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return round(self.completed_at - self.started_at, 3)
