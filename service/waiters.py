"""Waking whoever waits on a job: one Redis pub/sub subscription per API process.

Long-polls, `Prefer: wait` and SSE streams wait for a job's next state change. Polling Redis
for each of them would make N waiting clients cost N polls a second; instead the process
holds ONE pub/sub connection, PSUBSCRIBEd to `{prefix}job:*:changed` (every state change after
creation publishes its event id there, inside the atomic step that makes it: see
service/events.py), and wakes the in-process waiters of the job a message names. A waiter
costs Redis one read when it starts and one per change of its job, however long it waits.

Why one pattern subscription rather than SUBSCRIBE per waited-on job: the cost to Redis is
constant whatever the number of waiters (no SUBSCRIBE/UNSUBSCRIBE round trips per request,
no refcounting), at the price of every API process receiving every job's changes, ~4 small
messages per job, waited on or not. At 1,000 jobs/s and 10 API processes that is ~40k
messages/s out of Redis, where per-job subscriptions would start to pay for themselves.

Races, and why none loses a change:
- A waiter registers (`watch`) first, then reads the job, then waits: a change between its
  read and its wait has already set its flag.
- Changes published while the subscription is down, or before it is first confirmed, are not
  heard. So whenever the subscription becomes active (the first time and after every
  reconnect), every waiter is woken to read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.jobs import Job
from service.keys import RedisKeys
from service.store import JobStore

logger = logging.getLogger("vidhook.waiters")


class Watch:
    """One waiter's flag: set when its job may have changed since it last looked."""

    __slots__ = ("_flag", "job_id")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._flag = asyncio.Event()

    def wake(self) -> None:
        self._flag.set()

    async def changed(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a wake-up; True if one came (read the job again then).

        A wake-up that came before the call counts: it returns at once.
        """
        if not self._flag.is_set():
            if timeout_s <= 0:
                return False
            try:
                async with asyncio.timeout(timeout_s):
                    await self._flag.wait()
            except TimeoutError:
                return False
        self._flag.clear()
        return True


class JobWaiters:
    """The process's subscription to job changes and the waiters it wakes, by job id.

    `start()` in the app's lifespan, `stop()` at shutdown. `watch(job_id)` is usable at any
    time; while the subscription is not (yet) active, waiters just wait for the wake-up its
    activation sends to all.
    """

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        idle_ping_s: float = 15.0,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.idle_ping_s = idle_ping_s
        self.reconnect_delay_s = reconnect_delay_s
        self.subscribed = asyncio.Event()
        # How often the subscription became active: 1 after start, +1 per reconnect.
        self.activations = 0
        self._watches: dict[str, set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many waiters are registered now."""
        return sum(len(watches) for watches in self._watches.values())

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="job-waiters")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.subscribed.clear()
        self._wake_all()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[Watch]:
        """Register a waiter for `job_id` for the duration of the block.

        Register before reading the job, so that no change between the read and the wait
        is missed.
        """
        watch = Watch(job_id)
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(job_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[job_id]

    def _wake(self, job_id: str) -> None:
        for watch in self._watches.get(job_id, ()):
            watch.wake()

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("job change subscription lost (%s); reconnecting", exc)
            self.subscribed.clear()
            # Anything published while we were away was not heard: everyone reads again.
            self._wake_all()
            await asyncio.sleep(self.reconnect_delay_s)

    async def _listen(self) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.psubscribe(self.keys.job_changed_pattern)
            pinged = False
            while True:
                message = await pubsub.get_message(timeout=self.idle_ping_s)
                if message is None:
                    # Quiet for a while: a PING tells a dead connection from a quiet system;
                    # no answer within another interval, and we reconnect.
                    if pinged:
                        raise RedisTimeoutError("no answer to PING on the subscription")
                    await pubsub.ping()
                    pinged = True
                    continue
                pinged = False
                kind = message["type"]
                if kind == "pmessage":
                    channel = message["channel"]
                    job_id = self.keys.job_id_of_changed(
                        channel.decode() if isinstance(channel, bytes) else str(channel)
                    )
                    if job_id is not None:
                        self._wake(job_id)
                elif kind == "psubscribe":
                    self.activations += 1
                    self.subscribed.set()
                    self._wake_all()


async def wait_for_job(
    store: JobStore, waiters: JobWaiters, job_id: str, timeout_s: float, *, tenant: str
) -> Job | None:
    """The job once it is finished, or as it is after `timeout_s`, whichever comes first.

    None when there is no such job for `tenant` (then it returns at once, having waited for
    nothing). Costs one job read, plus one per state change while it waits.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with waiters.watch(job_id) as watch:
        job = await store.get(job_id)
        while job is not None and job.tenant == tenant and not job.status.is_terminal:
            if not await watch.changed(deadline - loop.time()):
                break
            job = await store.get(job_id)
    return job if job is not None and job.tenant == tenant else None
