"""Callback deliveries end to end: API, worker, simulator, and a scripted receiver, all real.

A system of its own (fresh key prefix and queue, its own API and worker) with a shrunk retry
schedule, `0,0.2,1.5`: attempt 2 comes 0.2 s after attempt 1, attempt 3 1.5 s after that, then
the delivery is dead-lettered. Every callback received is verified with the official
`standardwebhooks` package.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service import stored_body
from service.app import create_app
from service.deliveries import attempt_task_id
from service.dev.localredis import free_port
from service.jobs import Job, JobStatus
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, Task, now_ms
from tests.callbacks.conftest import ScriptedReceiver
from tests.conftest import (
    CALLBACK_SECRET,
    LOG_LINES,
    TENANT_A_KEY,
    TENANT_B_KEY,
    bearer,
    i2v_body,
)
from tests.support.isolation import isolated
from tests.support.servers import ServerThread
from tests.support.workerthread import WorkerThread

NEW_SECRET = "whsec_" + base64.b64encode(b"tenant-b-new-secret-0123456789ab").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"tenant-b-old-secret-0123456789ab").decode()
LOG_LINES.secrets.extend(
    [NEW_SECRET, OLD_SECRET, NEW_SECRET.removeprefix("whsec_"), OLD_SECRET.removeprefix("whsec_")]
)
SCHEDULE = "0,0.2,1.5"
TIMEOUT_S = 0.5

Request = tuple[float, dict[str, str], bytes]


@pytest.fixture(scope="module")
def delivery_settings(settings: Settings) -> Settings:
    port = free_port()
    return isolated(
        settings,
        # fal's webhooks come to this API, not the session's.
        port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        callback_retry_schedule_s=SCHEDULE,
        callback_timeout_s=TIMEOUT_S,
        deadline_sweep_interval_s=1,
        tenant_callback_secrets=SecretStr(json.dumps({"tenant-b": [NEW_SECRET, OLD_SECRET]})),
    )


@pytest.fixture(scope="module")
def delivery_system(delivery_settings: Settings) -> Iterator[ServerThread]:
    worker = WorkerThread(delivery_settings).start()
    try:
        with ServerThread(create_app(delivery_settings), port=delivery_settings.port) as api:
            yield api
    finally:
        worker.stop()


@pytest.fixture
def api(delivery_system: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=delivery_system.url, headers=bearer(TENANT_A_KEY), timeout=10
    ) as http:
        yield http


def submit(api: httpx.Client, url: str, **extra: Any) -> str:
    body = {**i2v_body(f"deliveries-{uuid.uuid4().hex[:8]}"), "callback_url": url, **extra}
    answer = api.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def cancelled_job(settings: Settings, url: str, *, doom_first_attempt: bool = False) -> str:
    """A job (tenant-a) recorded and cancelled straight in the store, so its callback goes at
    once, without a render at the simulator; the worker and the receiver are as real.

    `doom_first_attempt`: ARQ will drop the first attempt's task unrun ("max retries
    exceeded"), as it did to the user whose CALLBACK_MAX_TRIES was lowered across a restart.
    """
    job_id = f"job_{uuid.uuid4().hex}"

    async def record_and_cancel() -> None:
        keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
        async with Redis.from_url(settings.redis_url) as redis:
            store = JobStore(redis, keys, job_retention_s=3600)
            job = Job.queued(
                job_id, "tenant-a", "fal-ai/veo3.1/fast/image-to-video", {"prompt": "x"},
                callback_url=url, metadata=None, estimated_cost_usd=None,
                created_at_ms=now_ms(),
            )  # fmt: skip
            # Its dispatch far in the future: this job only ever gets cancelled.
            later = Task(f"never:{job_id}", "dispatch_job", (job_id,), defer_s=3600)
            await store.create(job_id, "tenant-a", job.to_new_hash(), later)
            if doom_first_attempt:
                first_try = attempt_task_id(job_id, "job.cancelled", 0, 0)
                await redis.set(f"arq:retry:{first_try}", 1000, ex=600)
            moved = await store.transition(
                job_id, JobStatus.CANCELLED, reason="cancel", finished=True
            )
            assert moved.applied

    asyncio.run(record_and_cancel())
    return job_id


def eventually(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}; last: {last!r}")


def wait_requests(receiver: ScriptedReceiver, name: str, count: int, **kw: Any) -> list[Request]:
    found: list[Request] = eventually(
        lambda: (r := receiver.requests(name)) and len(r) >= count and r,
        what=f"{count} request(s) to {name}",
        **kw,
    )
    return found


def callback_state(api: httpx.Client, job_id: str, status: str) -> dict[str, Any]:
    job: dict[str, Any] = eventually(
        lambda: (
            (j := api.get(f"/v1/jobs/{job_id}").json()).get("callback", {}).get("status") == status
            and j
        ),
        what=f"callback.status {status}",
    )
    return job


def deliveries(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = api.get(f"/v1/jobs/{job_id}/deliveries")
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def verified(request: Request, secret: str = CALLBACK_SECRET) -> dict[str, Any]:
    """The payload, once the official library has verified the request's signature."""
    _, headers, body = request
    payload: dict[str, Any] = Webhook(secret).verify(body, headers)
    return payload


def assert_one_message(requests: list[Request]) -> None:
    """Every attempt carries the same webhook-id and byte-identical body, each signed."""
    ids = {headers["webhook-id"] for _, headers, _ in requests}
    bodies = {body for _, _, body in requests}
    assert len(ids) == 1 and len(bodies) == 1, (ids, len(bodies))
    for request in requests:
        verified(request)


def test_a_callback_accepted_at_once_is_delivered_once_and_logged(
    api: httpx.Client, scripted_receiver: ScriptedReceiver
) -> None:
    job_id = submit(api, scripted_receiver.plan("ok", 204))
    job = callback_state(api, job_id, "delivered")

    [request] = scripted_receiver.requests("ok")
    payload = verified(request)
    assert payload["type"] == "job.completed" and payload["data"]["id"] == job_id
    assert request[1]["webhook-id"] == f"msg_{job_id}_completed"
    assert job["callback"]["attempts"] == 1
    assert job["callback"]["events"] == ["job.completed", "job.failed", "job.cancelled"]
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "delivered" and delivery["webhook_id"] == f"msg_{job_id}_completed"
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 204 and attempt["outcome"] == "delivered"
    assert attempt["error"] is None and attempt["latency_ms"] >= 0 and attempt["at"]


def test_a_server_error_is_retried_on_schedule_with_the_same_id_and_body(
    api: httpx.Client, scripted_receiver: ScriptedReceiver
) -> None:
    job_id = submit(api, scripted_receiver.plan("5xx", 500, 502, 204))
    callback_state(api, job_id, "delivered")

    requests = scripted_receiver.requests("5xx")
    assert len(requests) == 3
    assert_one_message(requests)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(requests)]
    assert 0.15 <= gaps[0] < 1.0, gaps  # 0.2 s ± 10 %
    assert 1.3 <= gaps[1] < 3.0, gaps  # 1.5 s ± 10 %
    [delivery] = deliveries(api, job_id)
    assert [(a["number"], a["status_code"], a["outcome"]) for a in delivery["attempts"]] == [
        (1, 500, "scheduled"),
        (2, 502, "scheduled"),
        (3, 204, "delivered"),
    ]
    assert delivery["attempts"][0]["error"] == "receiver answered HTTP 500"


def test_410_gone_stops_at_once_and_dead_letters(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(delivery_settings, scripted_receiver.plan("gone", 410, 204))
    job = callback_state(api, job_id, "dead_lettered")

    time.sleep(0.6)  # past the next step: no further try comes
    [request] = scripted_receiver.requests("gone")
    verified(request)
    assert "410" in job["callback"]["last_error"]
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "dead_lettered" and len(delivery["attempts"]) == 1
    assert "410" in delivery["dead_letter_reason"]
    dead = api.get("/v1/callbacks/dead").json()["data"]
    assert job_id in [d["job_id"] for d in dead]
    # The overview counts it among the last hour's dead letters.
    assert api.get("/v1/stats").json()["dead_letters_last_hour"] >= 1


def test_retry_after_of_a_503_is_honoured(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(delivery_settings, scripted_receiver.plan("busy", (503, "1"), 204))
    callback_state(api, job_id, "delivered")

    first, second = scripted_receiver.requests("busy")
    assert_one_message([first, second])
    # The schedule says 0.2 s; the receiver asked for 1 s (within the next-but-one step).
    assert 0.95 <= second[0] - first[0] < 1.5


def test_retry_after_beyond_the_next_but_one_step_is_bounded(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(
        delivery_settings, scripted_receiver.plan("slow-down", (429, "3600"), 204)
    )
    callback_state(api, job_id, "delivered")

    first, second = scripted_receiver.requests("slow-down")
    assert 1.3 <= second[0] - first[0] < 3.0  # capped at the 1.5 s step, not an hour


def test_a_redirect_is_a_failure_and_never_followed(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(delivery_settings, scripted_receiver.plan("moved", "redirect", 204))
    callback_state(api, job_id, "delivered")

    assert scripted_receiver.requests("moved-redirected") == []
    assert_one_message(scripted_receiver.requests("moved"))
    [delivery] = deliveries(api, job_id)
    first = delivery["attempts"][0]
    assert first["status_code"] == 302 and first["outcome"] == "scheduled"
    assert "redirects are not followed" in first["error"]


def test_a_receiver_that_does_not_answer_in_time_is_a_failure(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(delivery_settings, scripted_receiver.plan("hang", "slow", 204))
    callback_state(api, job_id, "delivered")

    assert_one_message(scripted_receiver.requests("hang"))
    [delivery] = deliveries(api, job_id)
    first = delivery["attempts"][0]
    assert first["status_code"] is None and "timed out" in first["error"]
    assert TIMEOUT_S * 1000 * 0.9 <= first["latency_ms"] < TIMEOUT_S * 1000 + 1000


def test_an_exhausted_schedule_dead_letters_and_a_redelivery_delivers_the_same_message(
    api: httpx.Client, scripted_receiver: ScriptedReceiver
) -> None:
    job_id = submit(api, scripted_receiver.plan("down", 500, 500, 500, 204))
    job = callback_state(api, job_id, "dead_lettered")
    assert job["callback"]["attempts"] == 3
    dead = api.get("/v1/callbacks/dead").json()["data"]
    assert next(d for d in dead if d["job_id"] == job_id)["status"] == "dead_lettered"

    # Another tenant sees neither the log nor the job, nor can it redeliver.
    other = bearer(TENANT_B_KEY)
    assert api.get(f"/v1/jobs/{job_id}/deliveries", headers=other).status_code == 404
    assert api.post(f"/v1/jobs/{job_id}/callback/redeliver", headers=other).status_code == 404

    answer = api.post(f"/v1/jobs/{job_id}/callback/redeliver")
    assert answer.status_code == 202, answer.text
    assert [d["series"] for d in answer.json()["data"]] == [1]
    callback_state(api, job_id, "delivered")

    requests = scripted_receiver.requests("down")
    assert len(requests) == 4
    assert_one_message(requests)
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "delivered" and delivery["attempts_total"] == 4
    assert [(a["series"], a["outcome"]) for a in delivery["attempts"]] == [
        (0, "scheduled"),
        (0, "scheduled"),
        (0, "dead_lettered"),
        (1, "delivered"),
    ]
    dead = api.get("/v1/callbacks/dead").json()["data"]
    assert job_id not in [d["job_id"] for d in dead]


def test_redeliver_is_409_without_a_callback_and_404_for_no_job(api: httpx.Client) -> None:
    answer = api.post("/v1/jobs", json=i2v_body("no-callback"))
    job_id = answer.json()["id"]

    refused = api.post(f"/v1/jobs/{job_id}/callback/redeliver")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert api.post("/v1/jobs/job_missing/callback/redeliver").status_code == 404
    assert api.get(f"/v1/jobs/{job_id}/deliveries").json()["data"] == []


def test_a_redelivered_callback_is_sent_again_even_when_it_was_delivered(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(delivery_settings, scripted_receiver.plan("again", 204, 204))
    callback_state(api, job_id, "delivered")

    assert api.post(f"/v1/jobs/{job_id}/callback/redeliver").status_code == 202
    requests = wait_requests(scripted_receiver, "again", 2)
    assert_one_message(requests)


def test_only_the_selected_event_types_are_called_back(
    api: httpx.Client, scripted_receiver: ScriptedReceiver
) -> None:
    url = scripted_receiver.plan("events")
    job_id = submit(api, url, callback_events=["job.submitted", "job.completed"])
    eventually(
        lambda: (
            len(deliveries(api, job_id)) == 2
            and all(d["status"] == "delivered" for d in deliveries(api, job_id))
        ),
        what="both deliveries delivered",
    )
    time.sleep(0.5)  # nothing else follows

    requests = scripted_receiver.requests("events")
    types = sorted(verified(request)["type"] for request in requests)
    assert types == ["job.completed", "job.submitted"]
    ids = {request[1]["webhook-id"] for request in requests}
    assert ids == {f"msg_{job_id}_submitted", f"msg_{job_id}_completed"}
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["callback"]["events"] == ["job.submitted", "job.completed"]


def test_callback_events_are_validated(
    api: httpx.Client, scripted_receiver: ScriptedReceiver
) -> None:
    url = scripted_receiver.plan("never")
    for events in (["job.started"], [], "job.completed"):
        answer = api.post(
            "/v1/jobs",
            json={**i2v_body("bad-events"), "callback_url": url, "callback_events": events},
        )
        assert answer.status_code == 422, (events, answer.text)
        assert answer.json()["errors"][0]["path"][0] == "callback_events"
    without_url = {**i2v_body("bad-events"), "callback_events": ["job.completed"]}
    assert api.post("/v1/jobs", json=without_url).status_code == 422


def test_during_a_rotation_both_of_a_tenants_secrets_sign_each_callback(
    delivery_system: ServerThread, scripted_receiver: ScriptedReceiver
) -> None:
    with httpx.Client(
        base_url=delivery_system.url, headers=bearer(TENANT_B_KEY), timeout=10
    ) as tenant_b:
        job_id = submit(tenant_b, scripted_receiver.plan("rotation", 500, 204))
        callback_state(tenant_b, job_id, "delivered")

    requests = scripted_receiver.requests("rotation")
    assert len(requests) == 2
    for request in requests:
        signatures = request[1]["webhook-signature"].split(" ")
        assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
        # Each secret verifies it alone: the receiver may hold either during the rotation.
        assert verified(request, NEW_SECRET)["data"]["id"] == job_id
        assert verified(request, OLD_SECRET)["data"]["id"] == job_id
        with pytest.raises(WebhookVerificationError):
            verified(request, CALLBACK_SECRET)  # the default secret is not tenant-b's


def test_a_job_from_the_fal_door_gets_fals_webhook_payload_signed(
    delivery_system: ServerThread, scripted_receiver: ScriptedReceiver
) -> None:
    hook = scripted_receiver.plan("fal-format", 503, 204)
    with httpx.Client(
        base_url=f"{delivery_system.url}/fal",
        headers={"Authorization": f"Key {TENANT_A_KEY}"},
        timeout=10,
    ) as door:
        answer = door.post(
            "/fal-ai/veo3.1/fast/image-to-video",
            json=i2v_body("fal-format")["input"],
            params={"fal_webhook": hook},
        )
        assert answer.status_code == 200, answer.text
        request_id = answer.json()["request_id"]
    requests = wait_requests(scripted_receiver, "fal-format", 2)
    assert_one_message(requests)
    payload = verified(requests[-1])
    assert payload["request_id"] == request_id and payload["status"] == "OK"


@pytest.mark.parametrize(
    ("answers", "ends"), [((204,), "delivered"), ((500, 500, 500), "dead_lettered")]
)
def test_a_delivery_whose_task_arq_dropped_is_resumed_by_the_sweep(
    api: httpx.Client,
    delivery_settings: Settings,
    scripted_receiver: ScriptedReceiver,
    answers: tuple[int, ...],
    ends: str,
) -> None:
    """The user's bug: ARQ dropped callback tasks ("max retries exceeded") before vidhook's
    code ran, and the job stayed `retrying` for ever. Here ARQ drops the first attempt's task
    the same way (its try counter already past max_tries); the sweep must enqueue it again."""
    name = f"dropped-{ends}"
    job_id = cancelled_job(
        delivery_settings, scripted_receiver.plan(name, *answers), doom_first_attempt=True
    )

    job = callback_state(api, job_id, ends)
    requests = wait_requests(scripted_receiver, name, len(answers))
    assert_one_message(requests)
    assert verified(requests[0])["type"] == "job.cancelled"
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == ends and len(delivery["attempts"]) == len(answers)
    assert job["callback"]["attempts"] == len(answers)


def test_a_refused_target_is_refused_again_on_redelivery(
    api: httpx.Client, delivery_settings: Settings, scripted_receiver: ScriptedReceiver
) -> None:
    # The URL rules that hold even where private targets are allowed (here: userinfo). Such a
    # URL never passes intake; a stored one (say, from before a rule existed) is refused on
    # every attempt, redeliveries included, and never contacted.
    url = scripted_receiver.plan("refused").replace("http://", "http://user:pw@")
    job_id = cancelled_job(delivery_settings, url)
    callback_state(api, job_id, "dead_lettered")

    assert api.post(f"/v1/jobs/{job_id}/callback/redeliver").status_code == 202
    eventually(
        lambda: (d := deliveries(api, job_id)) and len(d[0]["attempts"]) == 2
        and d[0]["status"] == "dead_lettered",
        what="the redelivery refused too",
    )  # fmt: skip
    [delivery] = deliveries(api, job_id)
    assert [a["series"] for a in delivery["attempts"]] == [0, 1]
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None and "refused" in attempt["error"]
    assert scripted_receiver.requests("refused") == []


def test_a_delivered_callback_keeps_its_exact_body_compressed(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    job_id = cancelled_job(delivery_settings, scripted_receiver.plan("compressed", 204))
    callback_state(api, job_id, "delivered")
    [(_, _, sent)] = scripted_receiver.requests("compressed")

    async def stored() -> dict[bytes, bytes]:
        keys = RedisKeys(delivery_settings.redis_key_prefix, delivery_settings.arq_queue_name)
        async with Redis.from_url(delivery_settings.redis_url) as redis:
            key = keys.delivery(job_id, "job.cancelled")
            assert await redis.object("encoding", key) in (b"ziplist", b"listpack")
            assert not await redis.exists(
                keys.delivery_attempts(job_id, "job.cancelled"),
                f"{keys.prefix}job:{job_id}:deliveries",
            )
            raw: dict[bytes, bytes] = await redis.hgetall(key)  # type: ignore[misc]
            return raw

    raw = asyncio.run(stored())
    assert b"body" not in raw and stored_body.body_of({"body_z1": raw[b"body_z1"]}) == sent
    assert all(raw.values()) and b"job_id" not in raw and b"message_id" not in raw
    [delivery] = deliveries(api, job_id)
    assert (
        delivery["webhook_id"] == f"msg_{job_id}_cancelled" and delivery["last_status_code"] == 204
    )


def test_a_delivery_written_by_the_previous_version_is_retried_and_listed(
    api: httpx.Client, scripted_receiver: ScriptedReceiver, delivery_settings: Settings
) -> None:
    """Upgraded in place: a delivery the previous version wrote (every field, '' for none, the
    body plain, its attempts in a list, the job's set of deliveries) and left scheduled for
    its second attempt, whose task was lost. The sweep resumes it; it is sent byte for byte,
    listed with both attempts, and redelivered the same."""
    url = scripted_receiver.plan("previous", 204, 204)
    job_id = f"job_{uuid.uuid4().hex}"
    event = "job.completed"
    body = json.dumps(
        {"type": event, "timestamp": None, "data": {"id": job_id, "written_by": "v-previous"}},
        separators=(",", ":"),
    ).encode()
    long_ago_ms = now_ms() - 60_000

    async def write_previous_version() -> None:
        keys = RedisKeys(delivery_settings.redis_key_prefix, delivery_settings.arq_queue_name)
        async with Redis.from_url(delivery_settings.redis_url) as redis:
            store = JobStore(redis, keys, job_retention_s=3600)
            job = Job.queued(
                job_id, "tenant-a", "fal-ai/veo3.1/fast/image-to-video", {"prompt": "x"},
                callback_url=url, metadata=None, estimated_cost_usd=None,
                created_at_ms=long_ago_ms,
            )  # fmt: skip
            later = Task(f"never:{job_id}", "dispatch_job", (job_id,), defer_s=3600)
            await store.create(job_id, "tenant-a", job.to_new_hash(), later)
            first_try = {"series": 0, "number": 1, "at_ms": long_ago_ms + 10, "latency_ms": 4,
                         "status_code": 500, "error": "receiver answered HTTP 500",
                         "outcome": "scheduled"}  # fmt: skip
            fields = {
                "job_id": job_id, "tenant": "tenant-a", "event": event,
                "message_id": f"msg_{job_id}_completed", "url": url, "body": body,
                "status": "scheduled", "series": 0, "attempt": 1, "tries": 1,
                "attempts_total": 1, "created_at_ms": long_ago_ms,
                "updated_at_ms": long_ago_ms + 10, "next_at_ms": long_ago_ms + 210,
                "last_status_code": 500, "last_error": "receiver answered HTTP 500",
                "delivered_at_ms": "", "dead_at_ms": "", "dead_reason": "",
            }  # fmt: skip
            await redis.hset(keys.delivery(job_id, event), mapping=fields)  # type: ignore[misc]
            await redis.rpush(keys.delivery_attempts(job_id, event), json.dumps(first_try))  # type: ignore[misc]
            await redis.zadd(f"{keys.prefix}job:{job_id}:deliveries", {event: long_ago_ms})
            await redis.zadd(keys.deliveries_due, {f"{job_id} {event}": long_ago_ms + 210})

    asyncio.run(write_previous_version())
    [request] = wait_requests(scripted_receiver, "previous", 1)
    assert request[2] == body and request[1]["webhook-id"] == f"msg_{job_id}_completed"
    verified(request)
    eventually(lambda: deliveries(api, job_id)[0]["status"] == "delivered", what="delivered")
    [delivery] = deliveries(api, job_id)
    assert [(a["number"], a["status_code"], a["outcome"]) for a in delivery["attempts"]] == [
        (1, 500, "scheduled"),
        (2, 204, "delivered"),
    ]
    assert delivery["attempts_total"] == 2 and delivery["last_error"] is None
    assert delivery["created_at"] is not None and delivery["dead_lettered_at"] is None

    assert api.post(f"/v1/jobs/{job_id}/callback/redeliver").status_code == 202
    requests = wait_requests(scripted_receiver, "previous", 2)
    assert_one_message(requests)
    eventually(
        lambda: (d := deliveries(api, job_id)[0])["status"] == "delivered" and d["series"] == 1,
        what="redelivered",
    )
    assert [a["series"] for a in deliveries(api, job_id)[0]["attempts"]] == [0, 0, 1]
