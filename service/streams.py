"""Job events as live streams, for the SSE routes: one job's, or all of one tenant's.

- `job_history`: a job's events after a cursor (its hash's `history` field), then each new one
  as the process's waiter hub (service/waiters.py) says the job changed; it ends with the
  terminal event. One read when it starts and one per change: no polling.
- `TenantFeeds`: every event of one tenant's jobs, read from the global stream with
  `XREAD BLOCK` from a cursor, filtered by tenant here. Each open feed holds a blocking read,
  so a connection of its own: feeds get their own Redis pool (so they can never starve the
  intake's), sized to the number of feeds a process may have open, and the feed beyond that
  is refused. Sharing one reader per process would lift the bound, at the cost of handing
  each new feed over from its catch-up read to the shared one without a gap; not needed yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from redis.asyncio import Redis

from service.events import EventLog, JobEvent
from service.jobs import Job
from service.keys import RedisKeys
from service.store import JobStore
from service.waiters import JobWaiters

# A job stream also re-reads this often without a wake-up: a safety net costing one read per
# interval per open stream, should a wake-up ever be lost in a way waiters.py does not foresee.
RECHECK_S = 30.0
# A feed's XREAD BLOCK returns empty after this long and is sent again.
FEED_BLOCK_MS = 10_000


async def job_history(
    store: JobStore, waiters: JobWaiters, job: Job, after_id: str | None, *, max_s: float
) -> AsyncIterator[JobEvent]:
    """`job`'s events after entry id `after_id` (all without it), then the new ones as they
    come, until its terminal event or for `max_s` at most. Ends at once for a finished job
    with nothing after the cursor."""
    # `job` was read before this watch was registered; it can only be stale toward the past,
    # and a terminal status never changes again.
    finished = job.status.is_terminal
    cursor = after_id
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    with waiters.watch(job.id) as watch:
        while True:
            for event in await store.event_log.read_job_events(job.id, after_id=cursor):
                cursor = event.id
                yield event
                if event.to_status.is_terminal:
                    return
            remaining_s = deadline - loop.time()
            if finished or remaining_s <= 0:
                return
            await watch.changed(min(RECHECK_S, remaining_s))


class TenantFeeds:
    """Open per-tenant feeds of the global event stream, at most `max_open` at once.

    `redis` is this class's own client: its pool should hold `max_open` connections.
    """

    def __init__(self, redis: Redis, keys: RedisKeys, *, max_open: int) -> None:
        self.redis = redis
        self.log = EventLog(redis, keys)
        self.max_open = max_open
        self.open = 0

    def claim(self) -> Callable[[], None] | None:
        """Take a feed slot; returns its release (safe to call more than once), or None when
        every slot is taken."""
        if self.open >= self.max_open:
            return None
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        return release

    async def cursor_now(self) -> str:
        """The id of the newest event, as a cursor: reading after it gives only what is new.

        Resolved once, where a feed starts: '$' sent again after an empty XREAD would skip
        whatever was appended between the two reads.
        """
        return await self.log.last_event_id() or "0-0"

    async def events(self, tenant: str, after_id: str, *, max_s: float) -> AsyncIterator[JobEvent]:
        """The tenant's events after entry id `after_id`, as they come, for `max_s`.

        A cursor older than the stream's oldest entry (trimmed, see EVENT_STREAM_MAXLEN) reads
        from the oldest one there is.
        """
        cursor = after_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        while (remaining_ms := int((deadline - loop.time()) * 1000)) > 0:
            block_ms = min(FEED_BLOCK_MS, remaining_ms)
            for event in await self.log.read_events(cursor, count=100, block_ms=block_ms):
                cursor = event.id
                if event.tenant == tenant:
                    yield event

    async def aclose(self) -> None:
        await self.redis.aclose()
