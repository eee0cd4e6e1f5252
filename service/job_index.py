"""Listing jobs: cursor pages over the creation-time indexes, newest first, with filters.

Two sorted sets, written by create_job.lua with the job: `jobs:{tenant}` (a tenant's jobs) and
`jobs` (every job, for admin keys and operators). A page reads the index in batches and the
listed fields of each job (never its input, which may be megabytes of data URIs) in one
pipelined round trip per batch; filters apply to what was read, and a page stops after a
bounded number of batches so one request's cost is bounded however selective the filter.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from redis.asyncio import Redis

from service.jobs import Job, JobStatus
from service.keys import RedisKeys

# Every job field but `input`.
_LISTED_FIELDS = (
    "id", "tenant", "endpoint", "status", "created_at_ms", "updated_at_ms", "callback_url",
    "metadata", "estimated_cost_usd", "fal_request_id", "fal_status_url", "fal_response_url",
    "fal_cancel_url", "submitted_at_ms", "submit_pending_since_ms", "submit_attempts",
    "resubmits", "completed_at_ms", "result", "error", "callback_status", "callback_attempts",
    "callback_last_error",
)  # fmt: skip
MAX_PAGE_SIZE = 200
_BATCHES_PER_PAGE = 10


class BadCursor(ValueError):
    """A cursor that this service did not hand out."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    tenant: str | None = None  # None: every tenant (admin)
    status: JobStatus | None = None
    endpoint: str | None = None
    created_after_ms: int | None = None  # exclusive
    created_before_ms: int | None = None  # exclusive

    def admits(self, job: Job) -> bool:
        return (self.status is None or job.status is self.status) and (
            self.endpoint is None or job.endpoint == self.endpoint
        )


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def encode_cursor(created_at_ms: int, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at_ms}:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = text.partition(":")
        if not job_id:
            raise ValueError(text)
        return int(created), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("The cursor is not one this service handed out.") from exc


class JobIndex:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def page(self, where: JobFilter, *, limit: int, cursor: str | None = None) -> Page:
        """Up to `limit` jobs matching `where`, newest first, after `cursor`; raises BadCursor.

        `next_cursor` is None only when the index is exhausted; a page may be short (even
        empty) with a cursor when a selective filter scanned its batch budget.
        """
        index = self.keys.all_jobs if where.tenant is None else self.keys.tenant_jobs(where.tenant)
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        top: float | str = (
            f"({where.created_before_ms}" if where.created_before_ms is not None else "+inf"
        )
        bottom = f"({where.created_after_ms}" if where.created_after_ms is not None else "-inf"
        after: tuple[int, str] | None = decode_cursor(cursor) if cursor else None
        found: list[Job] = []
        last: tuple[int, str] | None = after
        widen = 0
        for _ in range(_BATCHES_PER_PAGE):
            if last is not None:
                top = last[0]  # inclusive: ids sharing that millisecond are skipped below
            num = limit + 1 + widen
            entries = await self.redis.zrevrangebyscore(
                index, top, bottom, start=0, num=num, withscores=True
            )
            # Same-millisecond members come in descending order: those >= the last are seen.
            fresh = [
                (member.decode(), int(score))
                for member, score in entries
                if last is None or int(score) < last[0] or member.decode() < last[1]
            ]
            if not fresh:
                if len(entries) < num:
                    return Page(found, None)
                widen += num  # a whole batch shared the last millisecond: read past it
                continue
            widen = 0
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in fresh:
                    pipe.hmget(self.keys.job(job_id), list(_LISTED_FIELDS))
                rows = await pipe.execute()
            for (job_id, score), values in zip(fresh, rows, strict=True):
                last = (score, job_id)
                if values[0] is None:
                    continue  # past its retention: the hash expired before the index entry
                job = Job.from_hash(
                    {
                        name.encode(): value
                        for name, value in zip(_LISTED_FIELDS, values, strict=True)
                        if value is not None
                    }
                )
                if (where.tenant is None or job.tenant == where.tenant) and where.admits(job):
                    found.append(job)
                    if len(found) == limit:
                        return Page(found, encode_cursor(score, job_id))
        return Page(found, encode_cursor(*last) if last else None)
