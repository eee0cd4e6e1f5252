"""What a delivery keeps in Redis: its compressed body, its log, and records of the previous
layout (service/deliveries.py), read and written through `Deliveries` on a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from service import stored_body
from service.callbacks import DeliveryResult
from service.deliveries import ATTEMPTS_KEPT, Deliveries, DeliveryStatus
from service.keys import RedisKeys
from service.settings import Settings
from tests.support.isolation import isolated

JOB = "job_0d1f8a7c2b3e4f5061728394a5b6c7d8"
EVENT = "job.completed"
FAILED = DeliveryResult(False, True, 500, "receiver answered HTTP 500")
DELIVERED = DeliveryResult(True, False, 204, "HTTP 204")
# A callback body as workers/notify.py builds it, with fal's own kind of URLs.
BODY = json.dumps(
    {
        "type": EVENT,
        "timestamp": "2026-12-03T06:38:30.932Z",
        "data": {
            "id": JOB,
            "object": "job",
            "status": "completed",
            "endpoint": "fal-ai/veo3.1/fast/image-to-video",
            "created_at": "2026-12-03T06:38:30.462Z",
            "updated_at": "2026-12-03T06:38:30.932Z",
            "submitted_at": "2026-12-03T06:38:30.499Z",
            "completed_at": "2026-12-03T06:38:30.932Z",
            "cancel_requested_at": None,
            "fal_request_id": "801a27a8-a3cd-4c96-95f7-3359fdbe44c6",
            "submissions": {"attempts": 1, "resubmits": 0},
            "estimated_cost_usd": 3.2,
            "metadata": {"user_id": 4211, "campaign": "winter-teaser"},
            "result": {
                "video": {
                    "url": "https://v3.fal.media/files/tiger/aNKndJ19CoWtw3rFAn6p_output.mp4",
                    "content_type": "video/mp4",
                    "file_name": "aNKndJ19CoWtw3rFAn6p_output.mp4",
                    "file_size": 1843217,
                }
            },
            "error": None,
            "assets": [],
            "links": {"self": f"/v1/jobs/{JOB}"},
        },
    },
    separators=(",", ":"),
).encode()

Scenario = Callable[[Redis, Deliveries], Awaitable[None]]


def run(settings: Settings, scenario: Scenario, *, steps: int = 3) -> None:
    config = isolated(settings)

    async def main() -> None:
        async with Redis.from_url(config.redis_url) as redis:
            keys = RedisKeys(config.redis_key_prefix, config.arq_queue_name)
            deliveries = Deliveries(redis, keys, schedule_s=[0.0] * steps, retention_s=3600)
            await scenario(redis, deliveries)

    asyncio.run(main())


async def opened(deliveries: Deliveries, body: bytes = BODY) -> Any:
    return await deliveries.open(
        job_id=JOB, tenant="tenant-a", event=EVENT, url="https://example.com/hook", body=body,
        at_ms=1_000,
    )  # fmt: skip


def test_the_body_dictionary_never_changes() -> None:
    # Stored bodies are only readable with the dictionary they were written with: a better
    # one is ZDICT_V2 in another field, never an edit of this one.
    assert stored_body.BODY_FIELD == "body_z1"
    assert hashlib.sha256(stored_body.ZDICT_V1).hexdigest() == (
        "e85f6decff88bf7e81fde2282a9aa385dec73f81aadd2462c499b83bd08bcf99"
    )


def test_a_delivered_callback_keeps_its_exact_body_compressed(settings: Settings) -> None:
    async def scenario(redis: Redis, deliveries: Deliveries) -> None:
        delivery = await opened(deliveries)
        assert delivery.body == BODY
        recorded = await deliveries.record(delivery, DELIVERED, at_ms=1_020, latency_ms=15)
        assert recorded is not None and recorded.body == BODY

        key = deliveries.keys.delivery(JOB, EVENT)
        raw = await redis.hgetall(key)  # type: ignore[misc]
        assert b"body" not in raw and len(raw[b"body_z1"]) < len(BODY) // 3
        # No field the key implies, none empty, none the status or the log already says.
        assert sorted(raw) == [
            b"attempts_total", b"body_z1", b"created_at_ms", b"log", b"status", b"tenant",
            b"tries", b"url",
        ]  # fmt: skip
        assert all(raw.values())
        # Every value within hash-max-ziplist-value: one compact listpack.
        assert await redis.object("encoding", key) in (b"ziplist", b"listpack")
        assert await redis.memory_usage(key, samples=0) <= 600
        assert not await redis.exists(
            deliveries.keys.delivery_attempts(JOB, EVENT),
            f"{deliveries.keys.prefix}job:{JOB}:deliveries",
        )

        [(listed, attempts)] = await deliveries.for_job(JOB)
        assert (
            listed.status is DeliveryStatus.DELIVERED
            and listed.message_id == f"msg_{JOB}_completed"
        )
        assert (listed.job_id, listed.event, listed.tenant) == (JOB, EVENT, "tenant-a")
        assert (listed.delivered_at_ms, listed.updated_at_ms, listed.created_at_ms) == (
            1_020,
            1_020,
            1_000,
        )
        assert (listed.last_status_code, listed.last_error, listed.next_at_ms) == (204, None, None)
        assert [(a.series, a.number, a.at_ms, a.latency_ms, a.status_code, a.error, a.outcome)
                for a in attempts] == [(0, 1, 1_020, 15, 204, None, "delivered")]  # fmt: skip

    run(settings, scenario)


def test_the_log_keeps_the_last_attempts_and_the_counters_count_every_one(
    settings: Settings,
) -> None:
    made = ATTEMPTS_KEPT + 5

    async def scenario(redis: Redis, deliveries: Deliveries) -> None:
        delivery = await opened(deliveries)
        for number in range(1, made + 1):
            at_ms = 1_000 + number
            delivery = await deliveries.record(delivery, FAILED, at_ms=at_ms, latency_ms=3)
            assert delivery is not None
        assert delivery.status is DeliveryStatus.DEAD_LETTERED
        assert (delivery.tries, delivery.attempts_total) == (made, made)
        assert delivery.dead_at_ms == 1_000 + made and "no attempt of" in (
            delivery.dead_reason or ""
        )
        assert (delivery.last_status_code, delivery.last_error) == (
            500,
            "receiver answered HTTP 500",
        )
        [(_, attempts)] = await deliveries.for_job(JOB)
        assert [a.number for a in attempts] == list(range(6, made + 1))

        # A redelivery starts a new series; the last attempt's status is the old series'.
        [again] = await deliveries.redeliver(JOB)
        assert (again.series, again.tries, again.attempts_total) == (1, 0, made)
        assert (again.last_status_code, again.last_error, again.dead_reason) == (None, None, None)
        raw = await redis.hgetall(deliveries.keys.delivery(JOB, EVENT))  # type: ignore[misc]
        assert b"tries" not in raw and b"dead_reason" not in raw and b"attempt" not in raw
        assert again.body == BODY

    run(settings, scenario, steps=made)


def test_a_redelivered_delivery_keeps_when_it_was_first_delivered(settings: Settings) -> None:
    async def scenario(redis: Redis, deliveries: Deliveries) -> None:
        delivery = await opened(deliveries)
        delivered = await deliveries.record(delivery, DELIVERED, at_ms=1_010, latency_ms=1)
        assert delivered is not None
        [again] = await deliveries.redeliver(JOB)
        assert again.status is DeliveryStatus.SCHEDULED and again.delivered_at_ms == 1_010
        refused = DeliveryResult(False, False, 410, "receiver answered HTTP 410 Gone")
        dead = await deliveries.record(again, refused, at_ms=again.updated_at_ms + 5, latency_ms=1)
        assert dead is not None and dead.status is DeliveryStatus.DEAD_LETTERED
        assert dead.delivered_at_ms == 1_010 and dead.dead_at_ms == again.updated_at_ms + 5
        assert [d.job_id for d in await deliveries.dead_letters("tenant-a")] == [JOB]

    run(settings, scenario)


def previous_version_fields(body: bytes) -> dict[str, Any]:
    """A delivery as the version before the compact layout wrote it: scheduled at its second
    attempt after a 500, every field stored ('' for none), the body plain."""
    return {
        "job_id": JOB, "tenant": "tenant-a", "event": EVENT, "message_id": f"msg_{JOB}_completed",
        "url": "https://example.com/hook", "body": body, "status": "scheduled", "series": 0,
        "attempt": 1, "tries": 1, "attempts_total": 1, "created_at_ms": 1_000,
        "updated_at_ms": 1_010, "next_at_ms": 1_210, "last_status_code": 500,
        "last_error": "receiver answered HTTP 500",
    }  # fmt: skip


async def write_previous_version(redis: Redis, keys: RedisKeys, body: bytes) -> None:
    first = {"series": 0, "number": 1, "at_ms": 1_010, "latency_ms": 4, "status_code": 500,
             "error": "receiver answered HTTP 500", "outcome": "scheduled"}  # fmt: skip
    await redis.hset(keys.delivery(JOB, EVENT), mapping=previous_version_fields(body))  # type: ignore[misc]
    await redis.rpush(keys.delivery_attempts(JOB, EVENT), json.dumps(first))  # type: ignore[misc]
    await redis.zadd(f"{keys.prefix}job:{JOB}:deliveries", {EVENT: 1_000})


def test_a_delivery_written_by_the_previous_version_is_read_recorded_and_redelivered(
    settings: Settings,
) -> None:
    async def scenario(redis: Redis, deliveries: Deliveries) -> None:
        keys = deliveries.keys
        await write_previous_version(redis, keys, BODY)

        delivery = await deliveries.get(JOB, EVENT)
        assert delivery is not None and delivery.body == BODY and delivery.is_at(0, 1)
        assert (delivery.last_status_code, delivery.next_at_ms, delivery.tries) == (500, 1_210, 1)
        task = await deliveries.current_task(JOB, EVENT)
        assert task is not None and task.args == (JOB, EVENT, 0, 1)

        recorded = await deliveries.record(delivery, DELIVERED, at_ms=1_300, latency_ms=2)
        assert recorded is not None and recorded.status is DeliveryStatus.DELIVERED
        assert (recorded.tries, recorded.attempts_total) == (2, 2)
        assert (recorded.last_status_code, recorded.last_error) == (204, None)
        assert recorded.delivered_at_ms == 1_300 and recorded.body == BODY
        [(listed, attempts)] = await deliveries.for_job(JOB)
        assert [(a.number, a.status_code, a.outcome) for a in attempts] == [
            (1, 500, "scheduled"),
            (2, 204, "delivered"),
        ]

        [again] = await deliveries.redeliver(JOB)
        assert (again.series, again.body, again.message_id) == (1, BODY, listed.message_id)
        assert again.delivered_at_ms == 1_300
        raw = await redis.hgetall(keys.delivery(JOB, EVENT))  # type: ignore[misc]
        assert all(raw.values())  # the '' fields the previous version stored are gone
        assert await redis.ttl(keys.delivery_attempts(JOB, EVENT)) > 0

    run(settings, scenario)


@pytest.mark.parametrize("body", [BODY, b'{"type":"job.completed","data":{}}'])
def test_a_body_comes_back_byte_for_byte(body: bytes) -> None:
    assert stored_body.body_of({"body_z1": stored_body.compress(body)}) == body
    assert stored_body.body_of({"body": body}) == body
