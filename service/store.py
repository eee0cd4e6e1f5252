"""Jobs in Redis: creation with its dispatch task in one round trip, and atomic state moves.

Every status change goes through one Lua step that checks it against `jobs.TRANSITIONS`,
writes the job, appends one event to the global stream and to the job's `history` field (see
service/events.py) and enqueues its follow-up tasks, atomically. `update_fields` is the other
kind of write: bookkeeping that changes no status and appends no event.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from arq.constants import expires_extra_ms
from redis.asyncio import Redis

from service import deliveries
from service.budgets import BudgetConfig, OverSpendCap
from service.events import EventLog
from service.jobs import REVISIONS, VIDHOOK_ORIGIN, Job, JobStatus, sources_of
from service.keys import RedisKeys
from service.lua_scripts import lua_source
from service.tasks import Task as Task

FieldValue = str | int | float
# Job fields up to this size travel to create_job.lua packed in one JSON argument.
_INLINE_VALUE_MAX_CHARS = 4096


@functools.cache
def _allowed_from(to: JobStatus) -> str:
    """The statuses `to` may be entered from, as the Lua steps take them (a spaced list)."""
    return " ".join(sorted(status.value for status in sources_of(to)))


def now_ms() -> int:
    return int(time.time() * 1000)


def _step_script(name: str) -> str:
    # A Redis script cannot call another: the shared functions go in front of each script.
    return budget_script(name)


def budget_script(name: str) -> str:
    """A script with the shared step and budget functions in front of it."""
    return lua_source("step.lua") + "\n" + lua_source("budget.lua") + "\n" + lua_source(name)


class CreateOutcome(Enum):
    CREATED = 1
    REPLAYED = 0
    KEY_REUSED = 2


@dataclass(frozen=True, slots=True)
class ActiveState:
    """The few fields of a job that say which task moves it on (the deadline sweep's view)."""

    FIELDS = ("status", "updated_at_ms", "created_at_ms", "parked", "submit_pending_since_ms")

    id: str
    status: JobStatus
    updated_at_ms: int
    parked: bool
    submit_pending_since_ms: int | None

    @classmethod
    def from_fields(cls, job_id: str, values: Sequence[bytes | None]) -> ActiveState:
        status, updated, created, parked, pending = (v.decode() if v else "" for v in values)
        return cls(
            id=job_id,
            status=JobStatus(status),
            updated_at_ms=int(updated or created or 0),
            parked=parked == "1",
            submit_pending_since_ms=int(pending) if pending else None,
        )


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
    # 'waiting' (no slot: parked in its tenant's line) or 'paused' (dispatch is paused).
    waiting: str | None = None
    endpoint: str = ""
    input_json: bytes = b""


@dataclass(frozen=True, slots=True)
class Moved:
    """What a transition did: `applied`, the status the job had before it (None: no job), and
    the id of the event it appended (None when refused)."""

    applied: bool
    previous: JobStatus | None
    event_id: str | None = None


class JobStore:
    """Reads and writes job records; every write that depends on the state is a Lua script."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        job_retention_s: int,
        event_stream_maxlen: int = 100_000,
        job_deadline_s: int = 6 * 3600,
        budget: BudgetConfig | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        # With a budget, intake parks jobs and admits them through it, terminal steps give
        # their lease back, and dispatch claims only with a lease (service/budgets.py).
        self.budget = budget
        self.budget_cfg = budget.lua_config(keys) if budget is not None else ""
        self.job_retention_s = job_retention_s
        self.job_deadline_s = job_deadline_s
        self.event_stream_maxlen = event_stream_maxlen
        # Index entries outlive their job's creation by the retention plus a day for the job
        # to run: a finished job's hash is kept `job_retention_s` from when it finished.
        self._index_keep_ms = (job_retention_s + 86_400) * 1000
        # Reading the events the steps below append (service/events.py).
        self.event_log = EventLog(redis, keys)
        self._create = redis.register_script(_step_script("create_job.lua"))
        self._transition = redis.register_script(_step_script("transition.lua"))
        self._claim_submit = redis.register_script(_step_script("claim_submit.lua"))
        self._ensure_task = redis.register_script(_step_script("ensure_task.lua"))
        self._requeue = redis.register_script(_step_script("requeue.lua"))

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
        gated: bool = False,
        spend: str = "",
    ) -> tuple[CreateOutcome, str]:
        """Record a job, its first event ('' -> queued) and its dispatch task, atomically.

        Returns the outcome and the job's id. `gated` (with a budget): the job joins its
        tenant's line instead, and whoever may go now is admitted (the dispatch task is
        enqueued by admission). `spend` (BudgetConfig.spend_argument) is checked against the
        tenant's caps and counted in the same step.

        Raises:
            OverSpendCap: the job would take its tenant past a spend cap; nothing was written.

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
            self.keys.events,
            self.keys.all_jobs,
            self.keys.active,
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
            tenant,
            str(fields["endpoint"]),
            self.event_stream_maxlen,
            "created",
            created_ms - self._index_keep_ms,
            created_ms + self.job_deadline_s * 1000,
            # An active job outlives its deadline by the retention at most, even if every
            # step meant to end it were lost.
            self.job_deadline_s + self.job_retention_s,
            self.budget_cfg if gated else "",
            spend,
            *large,
        ]
        reply = await self._create(keys=keys, args=args)
        if int(reply[0]) == 3:
            raise OverSpendCap(reply[1].decode(), int(reply[2]), int(reply[3]))
        return CreateOutcome(int(reply[0])), reply[1].decode()

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[misc]
        return Job.from_hash(raw) if raw else None

    async def active_states(self, job_ids: Sequence[str]) -> list[ActiveState | None]:
        """What a sweep needs to know of each job, in one round trip and without inputs or
        results; None for a job that is gone."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), list(ActiveState.FIELDS))
            replies: list[list[bytes | None]] = await pipe.execute()
        return [
            ActiveState.from_fields(job_id, reply) if reply[0] else None
            for job_id, reply in zip(job_ids, replies, strict=True)
        ]

    async def fields(self, job_id: str, *names: str) -> list[str | None]:
        """Some of a job's fields, without reading its (possibly large) input; None if unset."""
        raw = await self.redis.hmget(self.keys.job(job_id), list(names))  # type: ignore[misc]
        return [value.decode() if value else None for value in raw]

    async def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        reason: str,
        fields: Mapping[str, FieldValue] | None = None,
        follow_ups: Sequence[Task] = (),
        guard: tuple[str, str] | None = None,
        refused_event: Mapping[str, Any] | None = None,
        finished: bool = False,
        deliver: bool = True,
        refund: bool = False,
    ) -> Moved:
        """Move the job to `to` if `jobs.TRANSITIONS` allows it from its current status.

        Applied, the step writes `fields`, appends one event (`reason` says why, e.g.
        `webhook`), publishes its id on the job's changed channel and enqueues every task in
        `follow_ups`, atomically. With `deliver`, the follow-ups include the callback
        delivery of the move's event type when the job's `callback_events` select it
        (`deliveries.first_attempt`); pass False when another step announces it later (a
        completed job whose files are mirrored first). `guard=(field, value)` also refuses the
        move unless that field holds exactly `value`. `finished` starts the retention clock. A
        refused move writes nothing and appends no event; it logs `refused_event`, if given,
        to the job's notes (`events`). A `finished` step also gives the job's in-flight lease
        back and admits the next parked job; `refund` takes its counted spend back too (for a
        job that never reached fal).
        """
        delivery = deliveries.first_attempt(self.keys, job_id, to) if deliver else None
        return await self._step(
            job_id,
            allowed_from=_allowed_from(to),
            to=to.value,
            reason=reason,
            fields=fields,
            follow_ups=[*follow_ups, delivery] if delivery else follow_ups,
            guard=guard,
            refused_event=refused_event,
            finished=finished,
            refund=refund,
        )

    async def revise_own_failure(
        self,
        job_id: str,
        to: JobStatus,
        *,
        reason: str,
        fields: Mapping[str, FieldValue],
        follow_ups: Sequence[Task] = (),
    ) -> Moved:
        """Replace a failure vidhook decided itself by fal's outcome (`jobs.REVISIONS`).

        Applied only from a status `REVISIONS[to]` names and only while the job's
        `failure_origin` is vidhook's: a failure fal reported is never revised. Otherwise as
        `transition` (with its event's callback delivery); the job keeps its retention clock
        restarted.
        """
        delivery = deliveries.first_attempt(self.keys, job_id, to)
        if delivery is not None:
            follow_ups = [*follow_ups, delivery]
        return await self._step(
            job_id,
            allowed_from=" ".join(sorted(status.value for status in REVISIONS.get(to, ()))),
            to=to.value,
            reason=reason,
            fields={**fields, "failure_origin": ""},
            follow_ups=follow_ups,
            guard=("failure_origin", VIDHOOK_ORIGIN),
            finished=True,
        )

    async def update_fields(
        self,
        job_id: str,
        fields: Mapping[str, FieldValue],
        *,
        follow_ups: Sequence[Task] = (),
    ) -> JobStatus | None:
        """Write bookkeeping fields (and enqueue `follow_ups`) without changing the status.

        Appends no event. Returns the job's status, or None (and writes nothing) if there is
        no such job.
        """
        moved = await self._step(
            job_id, allowed_from="*", to="", reason="", fields=fields, follow_ups=follow_ups
        )
        return moved.previous

    async def _step(
        self,
        job_id: str,
        *,
        allowed_from: str,
        to: str,
        reason: str,
        fields: Mapping[str, FieldValue] | None,
        follow_ups: Sequence[Task],
        guard: tuple[str, str] | None = None,
        refused_event: Mapping[str, Any] | None = None,
        finished: bool = False,
        refund: bool = False,
    ) -> Moved:
        when_ms = now_ms()
        keys = [
            self.keys.job(job_id),
            self.keys.job_events(job_id),
            self.keys.events,
            self.keys.job_transitions(job_id),
            self.keys.queue,
            self.keys.active,
        ]
        args: list[Any] = [
            allowed_from,
            to,
            when_ms,
            reason,
            self.event_stream_maxlen,
            self.keys.job_changed(job_id),
            self.job_retention_s if finished else "",
            json.dumps({"at_ms": when_ms, **refused_event}) if refused_event else "",
            guard[0] if guard else "",
            guard[1] if guard else "",
            len(follow_ups),
            self.budget_cfg if finished else "",
            "1" if refund else "",
        ]
        for task in follow_ups:
            run_at_ms = when_ms + int(task.defer_s * 1000)
            mark_key, mark_member = task.mark or (self.keys.job(job_id), "")
            keys += [
                self.keys.arq_job(task.task_id),
                self.keys.arq_result(task.task_id),
                mark_key,
            ]
            args += [
                task.task_id,
                task.payload(when_ms),
                task.expiry_ms(),
                run_at_ms,
                task.only_if_set or "",
                mark_member,
            ]
        for name, value in (fields or {}).items():
            args += [name, value]
        reply = await self._transition(keys=keys, args=args)
        code, status = int(reply[0]), reply[1]
        previous = JobStatus(status.decode()) if status else None
        event_id = reply[2].decode() if code == 1 and reply[2] else None
        return Moved(applied=code == 1, previous=previous, event_id=event_id)

    async def claim_submit(self, job_id: str, *, reason: str = "submit") -> SubmitClaim:
        """Move the job to `submitting` for a submit and read what the submit needs, atomically.

        Claims only from the statuses `jobs.TRANSITIONS` allows into `submitting`, and only
        when no earlier submit is pending an answer (`submit_pending_since_ms` unset); it sets
        `submit_pending_since_ms` to now, counts one more submit attempt and appends the
        event. One round trip where a read and a guarded `transition` take two.
        """
        to = JobStatus.SUBMITTING
        reply = await self._claim_submit(
            keys=[self.keys.job(job_id), self.keys.events, self.keys.job_transitions(job_id)],
            args=[
                _allowed_from(to),
                to.value,
                now_ms(),
                reason,
                self.event_stream_maxlen,
                self.keys.job_changed(job_id),
                self.budget_cfg,
            ],
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
        if code == 3:
            return SubmitClaim(claimed=False, status=JobStatus.QUEUED, waiting=reply[1].decode())
        return SubmitClaim(claimed=False, status=JobStatus(reply[1].decode()) if reply[1] else None)

    async def requeue_paused(self, job_id: str) -> bool:
        """A submit fal refused for our key: the job back to queued, first in line, no lease.

        Appends the event (submitting -> queued). False if the job was no longer submitting.
        """
        if not self.budget_cfg:
            return False
        requeued = await self._requeue(
            keys=[self.keys.job(job_id), self.keys.events, self.keys.job_transitions(job_id)],
            args=[
                self.budget_cfg,
                now_ms(),
                self.event_stream_maxlen,
                self.keys.job_changed(job_id),
                "dispatch_paused",
            ],
        )
        return bool(requeued)

    async def ensure_task(self, task: Task) -> bool:
        """Enqueue `task` unless ARQ holds it queued or running; True if it was enqueued.

        For tasks that were lost (expired job key, a failure ARQ does not retry): a finished
        task's result is dropped so that the same id can run again.
        """
        when_ms = now_ms()
        enqueued = await self._ensure_task(
            keys=[
                self.keys.queue,
                self.keys.arq_job(task.task_id),
                self.keys.arq_result(task.task_id),
                self.keys.arq_in_progress(task.task_id),
            ],
            args=[
                task.task_id,
                task.payload(when_ms),
                task.expiry_ms(),
                when_ms + int(task.defer_s * 1000),
            ],
        )
        return bool(enqueued)

    async def overdue_jobs(self, at_ms: int, *, limit: int = 200) -> list[str]:
        """Ids of active jobs whose deadline is at or before `at_ms`, earliest first."""
        raw = await self.redis.zrangebyscore(self.keys.active, "-inf", at_ms, start=0, num=limit)
        return [item.decode() for item in raw]

    async def next_active_page(self, *, after_deadline_ms: int, limit: int) -> list[str]:
        """The next `limit` active jobs with a deadline after `after_deadline_ms`, for a sweep.

        Successive calls walk the whole index: a cursor in Redis (the last deadline read) says
        where the next page starts, and goes back to the start after the last page. The page
        starts at that deadline inclusive, so jobs sharing it are read twice rather than skipped
        (sweeping a job twice is harmless); only a page that is all one deadline moves past it.
        """
        raw_cursor = await self.redis.get(self.keys.sweep_cursor)
        cursor = int(raw_cursor) if raw_cursor is not None else None
        low = f"({after_deadline_ms}" if cursor is None or cursor <= after_deadline_ms else cursor
        page = await self.redis.zrangebyscore(
            self.keys.active, low, "+inf", start=0, num=limit, withscores=True
        )
        if len(page) < limit:
            await self.redis.delete(self.keys.sweep_cursor)  # the end: start over next time
        else:
            first, last = int(page[0][1]), int(page[-1][1])
            await self.redis.set(
                self.keys.sweep_cursor, last + 1 if first == last else last, ex=86_400
            )
        return [member.decode() for member, _ in page]

    async def deadline_ms(self, job_id: str) -> int | None:
        score = await self.redis.zscore(self.keys.active, job_id)
        return int(score) if score is not None else None

    async def forget_active(self, job_id: str) -> None:
        """Drop a job from the active index (it ended by a step that did not say so)."""
        await self.redis.zrem(self.keys.active, job_id)

    async def record_event(
        self,
        job_id: str,
        event: Mapping[str, Any],
        *,
        counter: str | None = None,
        counter_by: int = 1,
    ) -> None:
        """Note something that happened to a job without changing it; optionally count it.

        Notes are not events: the event streams hold state changes only.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.keys.job_events(job_id), json.dumps({"at_ms": now_ms(), **event}))
            pipe.ltrim(self.keys.job_events(job_id), -50, -1)
            if counter:
                pipe.hincrby(self.keys.job(job_id), counter, counter_by)
            await pipe.execute()

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.keys.job_events(job_id), 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def queue_position(self, task_id: str) -> int:
        """How many ARQ tasks are due before `task_id` (0 when it is next or already taken)."""
        rank = await self.redis.zrank(self.keys.queue, task_id)
        return int(rank) if rank is not None else 0

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
