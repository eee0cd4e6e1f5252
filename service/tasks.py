"""How ARQ tasks and their results are written to Redis: JSON, never pickle.

ARQ pickles by default, and unpickling runs code: whoever can write one key to Redis could
run anything on every worker. Every writer and reader of task payloads uses this pair — the
Lua steps that enqueue (via `store.Task.payload`), the worker (`job_serializer`,
`job_deserializer`, which also covers results), and anything reading results. Task arguments
are ids and numbers, so JSON loses nothing (the argument list comes back as the tuple ARQ made).
"""

from __future__ import annotations

import json
from typing import Any


def _fallback(value: object) -> str:
    # Results of failed tasks carry the exception object; its text is what anyone reads.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def serialize(data: dict[str, Any]) -> bytes:
    """ARQ's task or result dict (`t`, `f`, `a`, `k`, `et`, …) as compact JSON bytes."""
    return json.dumps(data, separators=(",", ":"), default=_fallback).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """The inverse of `serialize`; anything else (a planted pickle) raises ValueError."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("an ARQ payload is a JSON object")
    if isinstance(data.get("a"), list):
        data["a"] = tuple(data["a"])
    return data
