"""Jobs in Redis: creation with its dispatch task in one round trip, and atomic state moves."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from typing import Any

from arq.constants import expires_extra_ms
from arq.jobs import serialize_job
from redis.asyncio import Redis

from service.jobs import Job, JobStatus
from service.keys import RedisKeys

FieldValue = str | int | float
# Job fields up to this size travel to create_job.lua packed in one JSON argument.
_INLINE_VALUE_MAX_CHARS = 4096


def now_ms() -> int:
    return int(time.time() * 1000)


def _lua(name: str) -> str:
    return resources.files("service").joinpath("lua", name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Task:
    """An ARQ task to enqueue: the ARQ job id, the function name and its positional arguments."""

    task_id: str
    function: str
    args: tuple[Any, ...]
    defer_s: float = 0.0

    def payload(self, enqueue_time_ms: int) -> bytes:
        return serialize_job(self.function, self.args, {}, None, enqueue_time_ms)


class CreateOutcome(Enum):
    CREATED = 1
    REPLAYED = 0
    KEY_REUSED = 2


@dataclass(frozen=True, slots=True)
class SubmitClaim:
    """What `JobStore.claim_submit` found.

    `claimed`: the job is now being submitted, and the fields a submit needs came back with
    it (`input_json` exactly as stored). Otherwise `status` is the job's status (None: no such
    job), or `unclear` says an earlier submit's outcome is unknown and nothing was changed.
    """

    claimed: bool
    status: JobStatus | None = None
    unclear: bool = False
    endpoint: str = ""
    input_json: bytes = b""


@dataclass(frozen=True, slots=True)
class Moved:
    """What a transition did: `applied`, and the status the job had before it (None: no job)."""

    applied: bool
    previous: JobStatus | None


class JobStore:
    """Reads and writes job records; every write that depends on the state is a Lua script."""

    def __init__(self, redis: Redis, keys: RedisKeys, *, job_retention_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.job_retention_s = job_retention_s
        self._create = redis.register_script(_lua("create_job.lua"))
        self._transition = redis.register_script(_lua("transition.lua"))
        self._claim_submit = redis.register_script(_lua("claim_submit.lua"))

    async def create(
        self,
        job_id: str,
        tenant: str,
        fields: Mapping[str, FieldValue],
        dispatch: Task,
        *,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        idempotency_ttl_s: int = 86_400,
    ) -> tuple[CreateOutcome, str]:
        """Record a job and enqueue its dispatch task; returns the outcome and the job's id.

        With an idempotency key already used by this tenant, nothing is written: the outcome
        says whether the earlier request was the same one (REPLAYED) or not (KEY_REUSED).
        """
        created_ms = int(fields["created_at_ms"])
        keys = [
            self.keys.job(job_id),
            self.keys.tenant_jobs(tenant),
            self.keys.arq_job(dispatch.task_id),
            self.keys.arq_result(dispatch.task_id),
            self.keys.queue,
            self.keys.idempotency(tenant, idempotency_key) if idempotency_key else "",
        ]
        small: list[str] = []
        large: list[str] = []
        for name, value in fields.items():
            # Strings as they are, numbers as redis-py would write them (repr). Large values
            # stay separate arguments: decoding megabytes of JSON would stall Redis.
            text = value if isinstance(value, str) else repr(value)
            (small if len(text) <= _INLINE_VALUE_MAX_CHARS else large).extend((name, text))
        args: list[Any] = [
            job_id,
            created_ms,
            dispatch.payload(created_ms),
            expires_extra_ms,
            idempotency_ttl_s,
            fingerprint,
            json.dumps(small, ensure_ascii=False, separators=(",", ":")),
            *large,
        ]
        code, existing_id = await self._create(keys=keys, args=args)
        return CreateOutcome(int(code)), existing_id.decode()

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[misc]
        return Job.from_hash(raw) if raw else None

    async def move(
        self,
        job_id: str,
        *,
        allowed_from: Iterable[JobStatus] | None,
        to: JobStatus | None,
        fields: Mapping[str, FieldValue] | None = None,
        then: Task | None = None,
        then_if_set: str | None = None,
        refused_event: Mapping[str, Any] | None = None,
        finished: bool = False,
        guard: tuple[str, str] | None = None,
    ) -> Moved:
        """Set `to` (and write `fields`) only if the job's status is in `allowed_from`.

        `allowed_from=None` allows any status; `to=None` keeps the status and writes fields.
        `then` is enqueued in the same atomic step, to run `then.defer_s` later (and only if
        the job's field `then_if_set` is non-empty, when given). `finished` starts the
        retention clock. A refused move logs `refused_event` to the job's event list.
        `guard=(field, value)` also refuses the move unless that field holds exactly `value`.
        """
        when_ms = now_ms()
        run_at_ms = when_ms + int(then.defer_s * 1000) if then else when_ms
        task_id = then.task_id if then else ""
        keys = [
            self.keys.job(job_id),
            self.keys.job_events(job_id),
            self.keys.arq_job(task_id),
            self.keys.arq_result(task_id),
            self.keys.queue,
        ]
        args: list[Any] = [
            "*" if allowed_from is None else " ".join(status.value for status in allowed_from),
            to.value if to else "",
            when_ms,
            task_id,
            then.payload(when_ms) if then else "",
            expires_extra_ms + run_at_ms - when_ms,
            self.job_retention_s if finished else "",
            json.dumps({"at_ms": when_ms, **refused_event}) if refused_event else "",
            guard[0] if guard else "",
            guard[1] if guard else "",
            then_if_set or "",
            run_at_ms,
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        code, status = await self._transition(keys=keys, args=args)
        previous = JobStatus(status.decode()) if status else None
        return Moved(applied=int(code) == 1, previous=previous)

    async def claim_submit(
        self, job_id: str, *, allowed_from: Iterable[JobStatus], to: JobStatus
    ) -> SubmitClaim:
        """Move the job to `to` for a submit and read what the submit needs, atomically.

        Claims only from `allowed_from`, and only when no earlier submit is pending an answer
        (`submit_pending_since_ms` unset); it sets `submit_pending_since_ms` to now and counts
        one more submit attempt. One round trip where a read and a guarded `move` take two.
        """
        reply = await self._claim_submit(
            keys=[self.keys.job(job_id)],
            args=[" ".join(status.value for status in allowed_from), to.value, now_ms()],
        )
        code = int(reply[0])
        if code == 1:
            endpoint, input_json = reply[1:]
            return SubmitClaim(
                claimed=True,
                status=to,
                endpoint=endpoint.decode(),
                input_json=input_json,
            )
        if code == 2:
            return SubmitClaim(claimed=False, unclear=True)
        return SubmitClaim(claimed=False, status=JobStatus(reply[1].decode()) if reply[1] else None)

    async def record_event(
        self, job_id: str, event: Mapping[str, Any], *, counter: str | None = None
    ) -> None:
        """Log something that happened to a job without changing it; optionally count it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.keys.job_events(job_id), json.dumps({"at_ms": now_ms(), **event}))
            pipe.ltrim(self.keys.job_events(job_id), -50, -1)
            if counter:
                pipe.hincrby(self.keys.job(job_id), counter, 1)
            await pipe.execute()

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.keys.job_events(job_id), 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
