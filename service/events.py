"""The job event stream: one entry for every state change of every job, and how to read it.

Written only by the store's Lua steps (create_job.lua, transition.lua, claim_submit.lua,
requeue.lua, with the shared step.lua), in the same atomic step as the change itself, so the
stream never disagrees with the job records. Long-poll, SSE, callbacks, metrics and the public
event stream read it; nothing else has its own notion of "what happened".

Redis keys (see `RedisKeys`):

- `{prefix}events`: a stream of every job's state changes, trimmed to about
  EVENT_STREAM_MAXLEN entries (`XADD … MAXLEN ~ N`; default 100 000), oldest first out.
- `{prefix}job:{id}` field `history`: the same entries for one job, under the same entry ids,
  so an id read from one is a valid cursor in the other; one line each, oldest first:
  `<entry id> <from, '-' for the creation> <to> <at_ms minus the id's ms> <reason>\n`, e.g.
  `1767312000000-0 - queued 0 created`. The job's id, tenant and endpoint are its hash's own
  fields. Not trimmed (a job has a few moves); it goes with the job's record, JOB_RETENTION_S
  after the job finished. No step removes it (keep_inputs.lua drops `input` only).
- `{prefix}job:{id}:transitions`: where versions before the `history` field kept a job's
  entries, a stream of its own. A job recorded then has it and no `history`, and its later
  changes are still appended there (step.lua `append_event`); readers read both.
- `{prefix}job:{id}:changed`: a pub/sub channel; every state change after creation publishes
  its entry id there, so a waiter can SUBSCRIBE, then read the job's history after its cursor,
  instead of polling. (Subscribe first, then read: a change between the two is then not lost.)

Fields of each entry, all strings: `job_id`, `tenant`, `endpoint`, `from` (the previous
status, '' for the creation), `to` (the new status), `at_ms` (the job's `updated_at_ms` for
that change), `reason` (why, a short snake_case word: `created`, `submit`, `resubmit`,
`fal_accepted`, `fal_status`, `webhook`, `result`, `status`, `dispatch`,
`webhook_payload_error`, …). A self-move (submitting -> submitting: another submit attempt)
is an event too. Bookkeeping writes (callback progress, request ids) and ignored reports are
not events; the latter are notes in `{prefix}job:{id}:events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.jobs import JobStatus, iso_from_ms
from service.keys import RedisKeys

# The raw shape redis-py returns for one stream entry.
RawEntry = tuple[bytes, Mapping[bytes, bytes]]


def entry_order(entry_id: str) -> tuple[int, int]:
    """An entry id (`<ms>-<seq>`, or `<ms>`: seq 0) as numbers, the order Redis gives them.

    As strings, `999-0` would sort after `1000-0` and `5-10` before `5-9`.
    """
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_ms(entry_id: str) -> int:
    return entry_order(entry_id)[0]


def parse_history(history: str, job_id: str, tenant: str, endpoint: str) -> list[JobEvent]:
    """Every event of a job's `history` field, in the order they were appended."""
    return [
        JobEvent.from_history_line(line, job_id, tenant, endpoint)
        for line in history.splitlines()
        if line
    ]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One state change of one job, as the event streams hold it.

    `id` is the stream entry id (`<ms>-<seq>`), the same in the global stream and the job's
    history.
    `from_status` is None for the job's creation.
    """

    id: str
    job_id: str
    tenant: str
    endpoint: str
    from_status: JobStatus | None
    to_status: JobStatus
    at_ms: int
    reason: str

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> JobEvent:
        def text(name: str) -> str:
            return fields.get(name.encode(), b"").decode()

        previous = text("from")
        return cls(
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            job_id=text("job_id"),
            tenant=text("tenant"),
            endpoint=text("endpoint"),
            from_status=JobStatus(previous) if previous else None,
            to_status=JobStatus(text("to")),
            at_ms=int(text("at_ms")),
            reason=text("reason"),
        )

    @classmethod
    def from_history_line(cls, line: str, job_id: str, tenant: str, endpoint: str) -> JobEvent:
        """The event one line of a job's `history` field describes (format: module docstring)."""
        entry_id, previous, to, at_delta_ms, reason = line.split(" ", 4)
        return cls(
            id=entry_id,
            job_id=job_id,
            tenant=tenant,
            endpoint=endpoint,
            from_status=None if previous == "-" else JobStatus(previous),
            to_status=JobStatus(to),
            at_ms=entry_ms(entry_id) + int(at_delta_ms),
            reason=reason,
        )

    def to_resource(self) -> dict[str, Any]:
        """The event as the API shows it (SSE `data:`), described by `EVENT_SCHEMA`."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "tenant": self.tenant,
            "endpoint": self.endpoint,
            "from": self.from_status.value if self.from_status else None,
            "to": self.to_status.value,
            "at": iso_from_ms(self.at_ms),
            "at_ms": self.at_ms,
            "reason": self.reason,
        }


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One state change of one job. `id` is its entry id in the event stream "
    "(`<ms>-<seq>`): send it back as Last-Event-ID to resume after it.",
    "required": ["id", "job_id", "tenant", "endpoint", "from", "to", "at", "at_ms", "reason"],
    "properties": {
        "id": {"type": "string", "pattern": r"^\d+-\d+$"},
        "job_id": {"type": "string"},
        "tenant": {"type": "string"},
        "endpoint": {"type": "string"},
        "from": {"enum": [*(status.value for status in JobStatus), None]},
        "to": {"enum": [status.value for status in JobStatus]},
        "at": {"type": "string", "format": "date-time"},
        "at_ms": {"type": "integer"},
        "reason": {"type": "string"},
    },
}


class EventLog:
    """Reads the event streams; writing is the store's transition step alone."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def read_job_events(
        self, job_id: str, after_id: str | None = None, *, count: int | None = None
    ) -> list[JobEvent]:
        """The job's events in order, those after entry id `after_id` only when given (ids
        compared as numbers, as Redis does), the first `count` of them when given.

        One round trip: the job's `history` field and, for a job recorded before that field
        existed, its own stream (empty for any other job). Both are read, not one chosen by
        the other: while a deployment upgrades, a step run by the previous version writes a
        new job's change to the stream. Empty for an unknown job or one past its retention.
        """
        start = f"({after_id}" if after_id else "-"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.job(job_id), ["history", "tenant", "endpoint"])
            pipe.xrange(self.keys.job_transitions(job_id), min=start, max="+", count=count)
            replies: list[Any] = await pipe.execute()
        (history, tenant, endpoint), entries = replies
        events = [JobEvent.from_entry(entry_id, fields) for entry_id, fields in entries]
        if history is not None:
            after = entry_order(after_id) if after_id else (-1, -1)
            written = parse_history(history.decode(), job_id, tenant.decode(), endpoint.decode())
            events += [event for event in written if entry_order(event.id) > after]
            if entries:
                # Both places (an upgrade in progress): one sequence, by id, once each.
                events = sorted({e.id: e for e in events}.values(), key=lambda e: entry_order(e.id))
        return events[:count] if count is not None else events

    async def read_events(
        self, after_id: str = "0-0", *, count: int = 100, block_ms: int | None = None
    ) -> list[JobEvent]:
        """Up to `count` events of every job after entry id `after_id` ('$': only new ones).

        With `block_ms`, waits up to that long for the first one when there is none yet. An
        `after_id` older than the stream's oldest entry (trimmed away) reads from the oldest.
        """
        reply: list[tuple[bytes, list[RawEntry]]] = await self.redis.xread(
            {self.keys.events: after_id}, count=count, block=block_ms
        )
        return [
            JobEvent.from_entry(entry_id, fields)
            for _, entries in reply
            for entry_id, fields in entries
        ]

    async def last_event_id(self) -> str | None:
        """The id of the newest entry in the global stream (None when it is empty)."""
        entries: list[RawEntry] = await self.redis.xrevrange(self.keys.events, count=1)
        if not entries:
            return None
        entry_id = entries[0][0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
