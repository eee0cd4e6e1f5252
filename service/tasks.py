"""How ARQ tasks and their results are written to Redis: JSON, never pickle.

ARQ pickles by default, and unpickling runs code: whoever can write one key to Redis could
run anything on every worker. Every writer and reader of task payloads uses this pair — the
Lua steps that enqueue (via `store.Task.payload`), the worker (`job_serializer`,
`job_deserializer`, which also covers results), and anything reading results. Task arguments
are ids and numbers, so JSON loses nothing (the argument list comes back as the tuple ARQ made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from arq.constants import expires_extra_ms
from arq.jobs import serialize_job


def _fallback(value: object) -> str:
    # Results of failed tasks carry the exception object; its text is what anyone reads.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every payload: `json.dumps` with options builds a new one on each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_fallback)


def serialize(data: dict[str, Any]) -> bytes:
    """ARQ's task or result dict (`t`, `f`, `a`, `k`, `et`, …) as compact JSON bytes."""
    return _ENCODER.encode(data).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """The inverse of `serialize`; anything else (a planted pickle) raises ValueError."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("an ARQ payload is a JSON object")
    if isinstance(data.get("a"), list):
        data["a"] = tuple(data["a"])
    return data


@dataclass(frozen=True, slots=True)
class Task:
    """An ARQ task to enqueue: the ARQ job id, the function name and its positional arguments.

    `defer_s`: how long after the step it may run. `only_if_set`: as a follow-up, enqueue it
    only if this job field is non-empty when the step runs (read inside the atomic step, e.g.
    `callback_url`). `field~word|fallback` instead enqueues it only if the field's
    space-separated words include `word`, or, with the field absent, if `fallback` (a field
    name, optional) is non-empty: a callback's event filter (service/deliveries.py).
    `mark`: (sorted set key, member) to add, with the task's run-at time as score (NX), in the
    same step, when the task is enqueued: a durable record that outlives a lost task.
    """

    task_id: str
    function: str
    args: tuple[Any, ...]
    defer_s: float = 0.0
    only_if_set: str | None = None
    # How long its ARQ job key may outlive its run-at time. ARQ sets that key once, at enqueue
    # (default: a day), and does not refresh it on Retry: a task that retries for longer than
    # this silently expires. Tasks that poll for a job's whole life pass the job's deadline.
    expires_s: float | None = None
    mark: tuple[str, str] | None = None

    def expiry_ms(self) -> int:
        extra_ms = expires_extra_ms if self.expires_s is None else int(self.expires_s * 1000)
        return max(expires_extra_ms, extra_ms) + int(self.defer_s * 1000)

    def payload(self, enqueue_time_ms: int) -> bytes:
        return serialize_job(
            self.function, self.args, {}, None, enqueue_time_ms, serializer=serialize
        )
