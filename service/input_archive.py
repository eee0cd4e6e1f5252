"""A job's input, kept in the media store once fal holds the request.

Redis keeps the input only while it may still be sent (until fal accepts the submit or the
job ends): it can be a megabyte of data URIs, and an active job's record must stay small. The
same atomic step that drops the need for it enqueues `keep_input` (workers/keep_input.py),
which copies the input, byte for byte as fal received it, to `jobs/{job_id}/input.json` in
the media store, and only then removes it from the job's hash. `GET /v1/jobs/{id}/input`
(and the dashboard's thumbnails) read it from there afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from service.keys import RedisKeys
from service.lua_scripts import lua_source
from service.media import MediaError, MediaStore
from service.store import Task

# Enqueued once per job by the version before keep_inputs; still run if one is queued.
TASK_FUNCTION = "keep_input"
BATCH_FUNCTION = "keep_inputs"
BATCH_TASK_NAME = "keep_inputs"
# How long after the first job of a burst the task runs: the rest of the burst joins that run.
BATCH_DELAY_S = 5.0
CONTENT_TYPE = "application/json"


def archive_key(job_id: str) -> str:
    return f"jobs/{job_id}/input.json"


def keep_inputs_task(keys: RedisKeys) -> Task:
    """The one task that keeps every listed input."""
    return Task(keys.singleton_task(BATCH_TASK_NAME), BATCH_FUNCTION, ())


def keep_input_task(keys: RedisKeys, job_id: str) -> Task:
    """The follow-up that moves the job's input out of Redis: the job joins the list of inputs
    to keep (with the task's run-at as its time), and the one task that keeps them is enqueued
    unless it is queued or running already."""
    task = keep_inputs_task(keys)
    return Task(
        task.task_id,
        task.function,
        task.args,
        defer_s=BATCH_DELAY_S,
        mark=(keys.inputs_to_keep, job_id),
    )


class KeptInputs:
    """The list of inputs to keep, and the one step that records a page of them as kept."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._record = redis.register_script(lua_source("keep_inputs.lua"))

    async def due(self, at_ms: int, limit: int) -> list[str]:
        """Ids of listed jobs due by `at_ms`, earliest first."""
        raw = await self.redis.zrangebyscore(self.keys.inputs_to_keep, "-inf", at_ms, 0, limit)
        return [job_id.decode() for job_id in raw]

    async def next_due_ms(self) -> int | None:
        """When the earliest listed job is due (None: none is listed)."""
        earliest = await self.redis.zrange(self.keys.inputs_to_keep, 0, 0, withscores=True)
        return int(earliest[0][1]) if earliest else None

    async def inputs(self, job_ids: list[str]) -> list[bytes | None]:
        """Each job's input as its hash holds it (None: gone, or never stored)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.keys.job(job_id), "input")
            found: list[bytes | None] = await pipe.execute()
        return [raw or None for raw in found]

    async def record(self, archived: Mapping[str, str]) -> None:
        """Each job's input is out of Redis: copied to the media key given ('' = dropped)."""
        if not archived:
            return
        args: list[str] = []
        for job_id, key in archived.items():
            args += [job_id, key]
        await self._record(
            keys=[
                self.keys.inputs_to_keep,
                self.keys.input_keep_failures,
                *(self.keys.job(job_id) for job_id in archived),
            ],
            args=args,
        )

    async def failed(self, job_id: str) -> int:
        """A copy of the job's input failed; returns how many have so far."""
        return int(await self.redis.hincrby(self.keys.input_keep_failures, job_id, 1))  # type: ignore[misc]

    async def relist(self, job_id: str, at_ms: int) -> None:
        """The job is due again at `at_ms` (if it is still listed)."""
        await self.redis.zadd(self.keys.inputs_to_keep, {job_id: at_ms}, xx=True)


async def read_archived_input(media: MediaStore, key: str) -> Any:
    """The input stored under `key`; raises MediaError when the store cannot give it back."""
    raw = await media.read(key)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MediaError(f"{key} is not the JSON vidhook wrote") from exc
