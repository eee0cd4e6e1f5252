"""Callback deliveries: one per job and event type, its attempts, its retry schedule, its end.

A delivery is born in the step that moves the job (`first_attempt`, a follow-up of
`JobStore.transition`): the same Lua step enqueues its first attempt's task and marks it due
in `{prefix}deliveries:due`, so no state change can be recorded without its delivery. The
first attempt that runs writes the delivery's record (`open`): its `webhook-id`, the body
every retry sends byte for byte, and where it stands in the schedule. Each attempt is its own
ARQ task (`attempt_task`), and recording an attempt (`record`) writes its outcome and
enqueues the next attempt in one step. ARQ's try counter decides nothing: a task ARQ drops
(max tries, an expired key, a lost queue) leaves the delivery due, and the sweep
(`overdue`, `current_task`) enqueues it again. So a delivery is always exactly one of:

    scheduled ──(2xx)──────────────────────────▶ delivered
        │  ╰─(failure, steps left)─▶ scheduled (next step)
        ╰──(410, refused URL, schedule ran out)─▶ dead_lettered
    delivered | dead_lettered ──(redeliver)──▶ scheduled (a new series, same id and body)

The retry policy (`decide`): attempt i waits `schedule[i]` seconds (with ±10 % jitter) after
attempt i-1; 2xx delivers; 410 or a refused target dead-letters at once; 429 and 503 wait at
least their `Retry-After`, but never beyond the next-but-one step; any other answer, a
redirect (never followed), a timeout or a transport error is a failure.

A delivery is one hash, `{prefix}delivery:{job_id}:{event}` (RedisKeys.delivery), small enough
to stay one listpack (~0.5 KB once delivered). It stores only what nothing else says:

    tenant, url           where it goes, signed with whose secret
    body_z1               the body, zlib with a frozen dictionary (service/stored_body.py)
    status                scheduled | delivered | dead_lettered
    series, attempt       which series, and the schedule index of the next (or last) attempt
    tries, attempts_total attempts in this series, and in all
    created_at_ms         when the first attempt opened it
    next_at_ms            while scheduled: when the next attempt is due
    dead_reason           while dead-lettered: why
    updated_at_ms         only after a redelivery: otherwise the last attempt's time, or
                          created_at_ms before any
    delivered_at_ms       only when a redelivery followed a delivery: otherwise, delivered,
                          the last attempt's time
    log                   the last ATTEMPTS_KEPT attempts, oldest first, one JSON array a line

A field at zero (series, attempt, tries) or without a value is absent, not stored empty. The
job id, event and webhook-id are the key's; the last HTTP status and error are the last log
line's, when it is of the current series; dead_lettered_at is updated_at while dead-lettered.
A job's deliveries are read by their keys, one per event type of CALLBACK_EVENT_TYPES.

Deliveries written by earlier versions hold all their fields (some stored as ''), their body
plain in `body`, their attempts in a list `…:attempts` (RedisKeys.delivery_attempts), and a
per-job sorted set of their event types; they are read, retried and redelivered as they are:
their list is shown before the log and kept as long as the hash, the set is no longer read and
expires on its own, and each record or redelivery deletes the fields it no longer stores.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from service import stored_body
from service.callbacks import DeliveryResult
from service.domain_errors import NothingToRedeliver
from service.jobs import (
    CALLBACK_EVENT_TYPES,
    CALLBACK_STATUSES,
    JobStatus,
    event_type_for,
    iso_from_ms,
)
from service.keys import RedisKeys
from service.lua_scripts import lua_source
from service.tasks import Task

DELIVER_FUNCTION = "deliver_callback"
# Attempts kept in a delivery's log (the counters count every one): two series of the
# default ten-step schedule.
ATTEMPTS_KEPT = 20
JITTER = (0.9, 1.1)
# Dead letters listed per request at most.
DEAD_LETTERS_MAX = 200


class DeliveryStatus(StrEnum):
    SCHEDULED = "scheduled"
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


def message_id(job_id: str, event: str) -> str:
    """The `webhook-id` of a job's event: the same on every attempt and redelivery."""
    return f"msg_{job_id}_{event.removeprefix('job.')}"


def due_member(job_id: str, event: str) -> str:
    return f"{job_id} {event}"


def attempt_task_id(job_id: str, event: str, series: int, attempt: int) -> str:
    """Each attempt its own ARQ task id, so ARQ never counts one attempt's tries for another."""
    return f"deliver:{job_id}:{event}:{series}:{attempt}"


def attempt_task(
    keys: RedisKeys, job_id: str, event: str, series: int, attempt: int, *, defer_s: float = 0.0
) -> Task:
    return Task(
        attempt_task_id(job_id, event, series, attempt),
        DELIVER_FUNCTION,
        (job_id, event, series, attempt),
        defer_s=defer_s,
        mark=(keys.deliveries_due, due_member(job_id, event)),
    )


def first_attempt(keys: RedisKeys, job_id: str, status: JobStatus) -> Task | None:
    """The follow-up that delivers the move to `status`, if it is an event type at all.

    Enqueued (and marked due) by the step only if the job's `callback_events` select it; a
    job recorded before event selection existed has no `callback_events` and gets its
    terminal events whenever it has a callback_url.
    """
    if status not in CALLBACK_STATUSES:
        return None
    event = event_type_for(status)
    fallback = "|callback_url" if status.is_terminal else ""
    task = attempt_task(keys, job_id, event, 0, 0)
    return Task(
        task.task_id,
        task.function,
        task.args,
        only_if_set=f"callback_events~{event}{fallback}",
        mark=task.mark,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What an attempt's outcome means: the delivery's new status, and for `scheduled` how
    long until the next attempt. `reason` says why a delivery was dead-lettered."""

    status: DeliveryStatus
    delay_s: float = 0.0
    reason: str = ""


def decide(
    schedule_s: Sequence[float],
    attempt: int,
    result: DeliveryResult,
    *,
    jitter: Callable[[float, float], float] = random.uniform,
) -> Decision:
    """The retry policy, applied to attempt `attempt` (0-based) of a series."""
    if result.delivered:
        return Decision(DeliveryStatus.DELIVERED)
    if not result.retryable:  # 410 Gone, or a target refused for good
        return Decision(DeliveryStatus.DEAD_LETTERED, reason=result.detail)
    following = attempt + 1
    if following >= len(schedule_s):
        return Decision(
            DeliveryStatus.DEAD_LETTERED,
            reason=f"no attempt of {len(schedule_s)} was accepted; last: {result.detail}",
        )
    delay_s = schedule_s[following] * jitter(*JITTER)
    if result.retry_after_s is not None:
        # Honoured, but a receiver cannot push its retries past the next-but-one step.
        bound_s = max(delay_s, schedule_s[min(following + 1, len(schedule_s) - 1)])
        delay_s = max(delay_s, min(result.retry_after_s, bound_s))
    return Decision(DeliveryStatus.SCHEDULED, delay_s=delay_s)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST to the receiver, as the log shows it."""

    series: int
    number: int  # 1-based within its series
    at_ms: int
    latency_ms: int
    status_code: int | None
    error: str | None
    outcome: str  # the delivery's status after it: delivered, scheduled, dead_lettered

    def to_line(self) -> str:
        """The attempt as a line of its delivery's `log`: a JSON array, fields in order."""
        return json.dumps(
            [
                self.series,
                self.number,
                self.at_ms,
                self.latency_ms,
                self.status_code,
                self.error,
                self.outcome,
            ],
            separators=(",", ":"),
        )

    @classmethod
    def from_line(cls, raw: bytes) -> Attempt:
        series, number, at_ms, latency_ms, status_code, error, outcome = json.loads(raw)
        return cls(series, number, at_ms, latency_ms, status_code, error, outcome)

    @classmethod
    def from_json(cls, raw: bytes) -> Attempt:
        """An attempt as earlier versions listed it, a JSON object each."""
        data = json.loads(raw)
        return cls(**data)

    def to_resource(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "number": self.number,
            "at": iso_from_ms(self.at_ms),
            "latency_ms": self.latency_ms,
            "status_code": self.status_code,
            "error": self.error,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's delivery as stored: where it goes, what it sends, where it stands."""

    job_id: str
    tenant: str
    event: str
    message_id: str
    url: str
    body: bytes
    status: DeliveryStatus
    series: int  # 0 for the first; each redelivery starts the next
    attempt: int  # index in the schedule of the next attempt (scheduled) or the last one
    tries: int  # attempts made in this series
    attempts_total: int
    created_at_ms: int
    updated_at_ms: int
    next_at_ms: int | None
    last_status_code: int | None
    last_error: str | None
    delivered_at_ms: int | None
    dead_at_ms: int | None
    dead_reason: str | None

    logged: tuple[Attempt, ...] = ()  # the hash's `log`; earlier versions' list is apart

    @classmethod
    def from_hash(cls, job_id: str, event: str, raw: dict[bytes, bytes]) -> Delivery:
        """The delivery from its hash, in the layout of this version or an earlier one."""
        fields = {key.decode(): value for key, value in raw.items()}

        def text(name: str) -> str | None:
            value = fields.get(name)
            return value.decode() if value else None

        def number(name: str) -> int | None:
            value = fields.get(name)
            return int(value) if value else None

        log = fields.get("log")
        logged = tuple(Attempt.from_line(line) for line in log.split(b"\n")) if log else ()
        status = DeliveryStatus(text("status") or DeliveryStatus.SCHEDULED)
        series = number("series") or 0
        created_at_ms = number("created_at_ms") or 0
        last = logged[-1] if logged else None
        updated_at_ms = number("updated_at_ms") or (last.at_ms if last else created_at_ms)
        if "last_status_code" in fields or "last_error" in fields:  # an earlier version's
            last_status_code, last_error = number("last_status_code"), text("last_error")
        elif last is not None and last.series == series:
            last_status_code, last_error = last.status_code, last.error
        else:
            last_status_code, last_error = None, None
        delivered = status is DeliveryStatus.DELIVERED
        dead = status is DeliveryStatus.DEAD_LETTERED
        return cls(
            job_id=job_id,
            tenant=text("tenant") or "",
            event=event,
            message_id=message_id(job_id, event),
            url=text("url") or "",
            body=stored_body.body_of(fields),
            status=status,
            series=series,
            attempt=number("attempt") or 0,
            tries=number("tries") or 0,
            attempts_total=number("attempts_total") or 0,
            created_at_ms=created_at_ms,
            updated_at_ms=updated_at_ms,
            next_at_ms=number("next_at_ms") if status is DeliveryStatus.SCHEDULED else None,
            last_status_code=last_status_code,
            last_error=last_error,
            delivered_at_ms=updated_at_ms if delivered else number("delivered_at_ms"),
            dead_at_ms=updated_at_ms if dead else None,
            dead_reason=text("dead_reason") if dead else None,
            logged=logged,
        )

    def is_at(self, series: int, attempt: int) -> bool:
        """True while this attempt is the one the delivery waits for."""
        return (
            self.status is DeliveryStatus.SCHEDULED
            and self.series == series
            and self.attempt == attempt
        )

    def job_status(self) -> str:
        """The job's `callback.status` this delivery's state stands for."""
        if self.status is DeliveryStatus.SCHEDULED:
            return "retrying" if self.tries else "pending"
        return self.status.value

    def to_resource(self, attempts: Sequence[Attempt] = ()) -> dict[str, Any]:
        return {
            "object": "delivery",
            "job_id": self.job_id,
            "event": self.event,
            "webhook_id": self.message_id,
            "url": self.url,
            "status": self.status.value,
            "series": self.series,
            "attempts_in_series": self.tries,
            "attempts_total": self.attempts_total,
            "created_at": iso_from_ms(self.created_at_ms),
            "updated_at": iso_from_ms(self.updated_at_ms),
            "next_attempt_at": iso_from_ms(self.next_at_ms)
            if self.status is DeliveryStatus.SCHEDULED
            else None,
            "delivered_at": iso_from_ms(self.delivered_at_ms),
            "dead_lettered_at": iso_from_ms(self.dead_at_ms),
            "dead_letter_reason": self.dead_reason,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "attempts": [attempt.to_resource() for attempt in attempts],
        }


class Deliveries:
    """Reads and writes callback deliveries; every write that depends on state is a script.

    `schedule_s`: the delay before each attempt of a series (the first is normally 0).
    `retention_s`: how long a delivery is kept after its last write.
    """

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        schedule_s: Sequence[float],
        retention_s: int,
    ) -> None:
        if not schedule_s:
            raise ValueError("the retry schedule needs at least one step")
        self.redis = redis
        self.keys = keys
        self.schedule_s = tuple(schedule_s)
        # Kept while any attempt may still come, then as long as a job is kept.
        self.retention_s = retention_s + int(sum(self.schedule_s)) + 86_400
        step = lua_source("step.lua")
        self._open = redis.register_script(lua_source("delivery_open.lua"))
        self._record = redis.register_script(step + "\n" + lua_source("delivery_record.lua"))
        self._redeliver = redis.register_script(step + "\n" + lua_source("delivery_redeliver.lua"))

    async def get(self, job_id: str, event: str) -> Delivery | None:
        raw = await self.redis.hgetall(self.keys.delivery(job_id, event))  # type: ignore[misc]
        return Delivery.from_hash(job_id, event, raw) if raw else None

    async def open(
        self, *, job_id: str, tenant: str, event: str, url: str, body: bytes, at_ms: int
    ) -> Delivery:
        """The delivery of `event`, recorded now with `body` unless it already exists."""
        fields: dict[str, Any] = {
            "tenant": tenant,
            "url": url,
            stored_body.BODY_FIELD: stored_body.compress(body),
            "status": DeliveryStatus.SCHEDULED.value,
            "created_at_ms": at_ms,
            "next_at_ms": at_ms,
        }
        args: list[Any] = [self.retention_s]
        for name, value in fields.items():
            args += [name, value]
        reply = await self._open(keys=[self.keys.delivery(job_id, event)], args=args)
        raw = dict(zip(reply[::2], reply[1::2], strict=True))
        return Delivery.from_hash(job_id, event, raw)

    async def record(
        self, delivery: Delivery, result: DeliveryResult, *, at_ms: int, latency_ms: int
    ) -> Delivery | None:
        """Record the attempt `delivery` was at, and schedule, deliver or dead-letter it.

        Returns the delivery as it is now, or None if it had moved on (a stale task).
        """
        decision = decide(self.schedule_s, delivery.attempt, result)
        following = delivery.attempt + 1
        next_at_ms = at_ms + int(decision.delay_s * 1000)
        task = attempt_task(self.keys, delivery.job_id, delivery.event, delivery.series, following)
        error = None if result.delivered else result.detail
        attempt = Attempt(
            series=delivery.series,
            number=delivery.tries + 1,
            at_ms=at_ms,
            latency_ms=latency_ms,
            status_code=result.status_code,
            error=error,
            outcome=decision.status.value,
        )
        job_id, event = delivery.job_id, delivery.event
        recorded = await self._record(
            keys=[
                self.keys.delivery(job_id, event),
                self.keys.delivery_attempts(job_id, event),
                self.keys.deliveries_due,
                self.keys.dead_letters(delivery.tenant),
                self.keys.queue,
                self.keys.arq_job(task.task_id),
                self.keys.arq_result(task.task_id),
            ],
            args=[
                delivery.series,
                delivery.attempt,
                attempt.to_line(),
                decision.status.value,
                at_ms,
                self.retention_s,
                due_member(job_id, event),
                decision.reason,
                following,
                next_at_ms,
                task.task_id,
                task.payload(at_ms),
                ATTEMPTS_KEPT,
                task.expiry_ms() + int(decision.delay_s * 1000),
                at_ms - self.retention_s * 1000,
            ],
        )
        if not int(recorded):
            return None
        return await self.get(job_id, event)

    async def for_job(self, job_id: str) -> list[tuple[Delivery, list[Attempt]]]:
        """The job's deliveries, oldest first, each with its attempts: one round trip that
        reads every event type's delivery (and the attempts list earlier versions kept)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in CALLBACK_EVENT_TYPES:
                pipe.hgetall(self.keys.delivery(job_id, event))
                pipe.lrange(self.keys.delivery_attempts(job_id, event), 0, -1)
            replies = await pipe.execute()
        found = []
        for event, raw, listed in zip(
            CALLBACK_EVENT_TYPES, replies[::2], replies[1::2], strict=True
        ):
            if raw:
                delivery = Delivery.from_hash(job_id, event, raw)
                attempts = [Attempt.from_json(item) for item in listed] + list(delivery.logged)
                found.append((delivery, attempts))
        found.sort(key=lambda pair: pair[0].created_at_ms)
        return found

    async def redeliver(self, job_id: str, event: str | None = None) -> list[Delivery]:
        """Send finished deliveries of the job again: a new series, same webhook-id and body.

        With `event`, that event's; otherwise every dead-lettered one, or if none is, the
        latest finished one. Returns the deliveries as they are now.

        Raises:
            NothingToRedeliver: no such delivery, or none finished (all still scheduled).
        """
        deliveries = [delivery for delivery, _ in await self.for_job(job_id)]
        if event is not None:
            deliveries = [delivery for delivery in deliveries if delivery.event == event]
        finished = [d for d in deliveries if d.status is not DeliveryStatus.SCHEDULED]
        if not finished:
            if deliveries:
                raise NothingToRedeliver(job_id, "its callback is still being delivered")
            raise NothingToRedeliver(job_id, "no callback delivery has been made yet")
        dead = [d for d in finished if d.status is DeliveryStatus.DEAD_LETTERED]
        chosen = dead or [max(finished, key=lambda d: d.created_at_ms)]
        started = []
        for delivery in chosen:
            if await self._start_series(delivery):
                started.append(delivery)
        if not started:
            raise NothingToRedeliver(job_id, "the delivery was started again meanwhile")
        return [await self.get(d.job_id, d.event) or d for d in started]

    async def _start_series(self, delivery: Delivery) -> bool:
        at_ms = _now_ms()
        job_id, event = delivery.job_id, delivery.event
        task = attempt_task(self.keys, job_id, event, delivery.series + 1, 0)
        started = await self._redeliver(
            keys=[
                self.keys.delivery(job_id, event),
                self.keys.deliveries_due,
                self.keys.dead_letters(delivery.tenant),
                self.keys.queue,
                self.keys.arq_job(task.task_id),
                self.keys.arq_result(task.task_id),
                self.keys.delivery_attempts(job_id, event),
            ],
            args=[
                delivery.series,
                at_ms,
                due_member(job_id, event),
                task.task_id,
                task.payload(at_ms),
                task.expiry_ms(),
                self.retention_s,
                "" if delivery.delivered_at_ms is None else delivery.delivered_at_ms,
            ],
        )
        return int(started) == 1

    async def dead_letters(self, tenant: str, *, limit: int = 50) -> list[Delivery]:
        """The tenant's dead-lettered deliveries, newest first."""
        limit = max(1, min(limit, DEAD_LETTERS_MAX))
        members = await self.redis.zrevrange(self.keys.dead_letters(tenant), 0, limit - 1)
        found = []
        for member in members:
            job_id, _, event = member.decode().partition(" ")
            delivery = await self.get(job_id, event)
            if delivery is None or delivery.status is not DeliveryStatus.DEAD_LETTERED:
                # Expired, or redelivered meanwhile: the list forgets it.
                await self.redis.zrem(self.keys.dead_letters(tenant), member)
                continue
            found.append(delivery)
        return found

    async def overdue(self, before_ms: int, *, limit: int = 500) -> list[tuple[str, str]]:
        """(job id, event) of scheduled deliveries whose next attempt was due before then."""
        raw = await self.redis.zrangebyscore(
            self.keys.deliveries_due, "-inf", before_ms, start=0, num=limit
        )
        found = []
        for item in raw:
            job_id, _, event = item.decode().partition(" ")
            found.append((job_id, event))
        return found

    async def current_task(self, job_id: str, event: str) -> Task | None:
        """The attempt task a due delivery waits for; None (and it leaves the due set) if it
        is delivered or dead-lettered already."""
        delivery = await self.get(job_id, event)
        if delivery is None:  # never opened: its first attempt's task was lost
            return attempt_task(self.keys, job_id, event, 0, 0)
        if delivery.status is not DeliveryStatus.SCHEDULED:
            await self.forget(job_id, event)
            return None
        return attempt_task(self.keys, job_id, event, delivery.series, delivery.attempt)

    async def forget(self, job_id: str, event: str) -> None:
        """Drop a delivery from the due set (there is nothing left to send)."""
        await self.redis.zrem(self.keys.deliveries_due, due_member(job_id, event))


def _now_ms() -> int:
    return int(time.time() * 1000)


_TIME = {"type": ["string", "null"], "format": "date-time"}

ATTEMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One POST to the receiver.",
    "required": ["series", "number", "at", "latency_ms", "status_code", "error", "outcome"],
    "properties": {
        "series": {"type": "integer", "description": "0, then one more per redelivery."},
        "number": {"type": "integer", "description": "1-based within its series."},
        "at": {"type": "string", "format": "date-time"},
        "latency_ms": {"type": "integer"},
        "status_code": {
            "type": ["integer", "null"],
            "description": "The receiver's HTTP status; null when none came (timeout, "
            "connection refused, refused URL).",
        },
        "error": {"type": ["string", "null"], "description": "Why it was not delivered."},
        "outcome": {
            "enum": [status.value for status in DeliveryStatus],
            "description": "The delivery's status after this attempt.",
        },
    },
}

DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The delivery of one event type of a job's callback, with its attempts. "
    "`webhook_id` and the body are the same on every attempt and redelivery.",
    "required": ["object", "job_id", "event", "webhook_id", "status", "series", "attempts"],
    "properties": {
        "object": {"const": "delivery"},
        "job_id": {"type": "string"},
        "event": {"enum": list(CALLBACK_EVENT_TYPES)},
        "webhook_id": {"type": "string", "examples": ["msg_job_0d1f_completed"]},
        "url": {"type": "string"},
        "status": {
            "enum": [status.value for status in DeliveryStatus],
            "description": "scheduled: the next attempt is due at `next_attempt_at`; "
            "dead_lettered: no more attempts (schedule ran out, 410, refused URL).",
        },
        "series": {"type": "integer"},
        "attempts_in_series": {"type": "integer"},
        "attempts_total": {"type": "integer"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "next_attempt_at": _TIME,
        "delivered_at": _TIME,
        "dead_lettered_at": _TIME,
        "dead_letter_reason": {"type": ["string", "null"]},
        "last_status_code": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "attempts": {
            "type": "array",
            "items": ATTEMPT_SCHEMA,
            "description": f"Oldest first, the last {ATTEMPTS_KEPT} at most (empty in lists).",
        },
    },
}
