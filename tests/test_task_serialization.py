"""ARQ task payloads are JSON: a pickle planted in Redis is never unpickled by a worker.

ARQ's default serializer is pickle, so anyone able to write one Redis key could run code
on every worker (issue 8, item 10).
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

from redis import Redis

from service.dev.localredis import LocalRedis
from service.keys import RedisKeys
from service.settings import Settings
from service.store import Task, now_ms
from tests.support.workerthread import WorkerThread


class _CreatesFile:
    """Unpickling this opens (so creates) a file: the classic pickle payload, made harmless."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def plant(redis: Redis, settings: Settings, task_id: str, payload: bytes) -> dict[str, Any]:
    """Write a task as the Lua steps do, wait for the worker's result, return it decoded."""
    keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
    redis.psetex(keys.arq_job(task_id), 60_000, payload)
    redis.zadd(keys.queue, {task_id: now_ms()})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        raw = redis.get(keys.arq_result(task_id))
        if raw is not None:
            result: dict[str, Any] = json.loads(raw)
            return result
        time.sleep(0.02)
    raise AssertionError(f"the worker never finished task {task_id}")


def test_a_pickled_task_planted_in_redis_is_not_unpickled_by_the_worker(
    worker: WorkerThread, redis_server: LocalRedis, settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    payload = pickle.dumps(
        {"t": 1, "f": "notify_job", "a": [_CreatesFile(target)], "k": {}, "et": now_ms()}
    )
    with Redis.from_url(redis_server.url) as redis:
        result = plant(redis, settings, f"planted:{uuid.uuid4().hex}", payload)
    assert result["s"] is False
    assert not target.exists()


def test_a_json_task_runs_and_its_result_is_json(
    worker: WorkerThread, redis_server: LocalRedis, settings: Settings
) -> None:
    task = Task(f"notify:probe-{uuid.uuid4().hex}", "notify_job", ("job_that_does_not_exist",))
    with Redis.from_url(redis_server.url) as redis:
        result = plant(redis, settings, task.task_id, task.payload(now_ms()))
    assert result["s"] is True
    assert result["r"] == "nothing to notify"
