"""Hearing about jobs without polling, against the whole system (API, worker, simulator):
long-poll, `Prefer: wait`, SSE per job and per tenant, the limits on streams, a consumer group
reading the event stream, and how soon each of them answers after a job finishes."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.app import create_app
from service.events import EventLog, JobEvent
from service.jobs import JobStatus
from service.keys import RedisKeys
from service.settings import Settings
from tests.conftest import TENANT_A_KEY, TENANT_B_KEY, bearer, i2v_body, wait_for
from tests.support.falproxy import FalProxy, Fault
from tests.support.servers import ServerThread
from tests.support.sse import Event, parse
from tests.test_fal_webhooks import ok_payload, signed_headers


def marker() -> str:
    return f"stream-{uuid.uuid4().hex[:12]}"


def quick_body(case: str) -> dict[str, Any]:
    """The cheapest render the simulator does: 4 s, 720p, no audio."""
    return i2v_body(case, resolution="720p", generate_audio=False)


def job_history(settings: Settings, job_id: str) -> list[JobEvent]:
    async def read() -> list[JobEvent]:
        async with Redis.from_url(settings.redis_url) as redis:
            keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
            return await EventLog(redis, keys).read_job_events(job_id)

    return asyncio.run(read())


def read_job_stream(
    http: httpx.Client, job_id: str, headers: dict[str, str] | None = None
) -> list[Event]:
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=70) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        # The stream ends by itself after the terminal event: reading to the end must return.
        return [event for event in parse(answer.iter_lines()) if not event.comments]


@pytest.fixture
def idle_api(settings: Settings) -> Iterator[ServerThread]:
    """An API whose queue no worker reads, a heartbeat every 50 ms and room for one tenant
    stream: jobs stay queued, and streams stay quiet."""
    values: dict[str, Any] = dict(settings)
    prefix = f"idle{uuid.uuid4().hex[:6]}:"
    values.update(redis_key_prefix=prefix, arq_queue_name=f"{prefix}queue", port=0)
    values.update(sse_heartbeat_s=0.05, event_streams_max=1, sse_max_s=5)
    with ServerThread(create_app(Settings(**values))) as server:
        yield server


# --- long-poll -------------------------------------------------------------------------------


def test_a_long_poll_answers_when_the_job_finishes(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs", json=quick_body(marker())).json()["id"]
    answer = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}, timeout=70)
    assert answer.status_code == 200
    assert answer.json()["status"] == "completed"


def test_a_long_poll_on_a_running_job_answers_after_the_wait_with_the_job_as_it_is(
    idle_api: ServerThread,
) -> None:
    with httpx.Client(base_url=idle_api.url, headers=bearer(TENANT_A_KEY)) as http:
        job_id = http.post("/v1/jobs", json=quick_body(marker())).json()["id"]
        started = time.monotonic()
        answer = http.get(f"/v1/jobs/{job_id}", params={"wait": 1})
    assert 1.0 <= time.monotonic() - started < 3.0
    assert answer.status_code == 200
    assert answer.json()["status"] == "queued"


@pytest.mark.parametrize("wait", ["61", "-1", "1.5", "soon", ""])
def test_a_wait_outside_0_to_60_whole_seconds_is_a_422_problem(
    client: httpx.Client, wait: str
) -> None:
    answer = client.get("/v1/jobs/job_any", params={"wait": wait})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["path"] == ["query", "wait"]


def test_a_long_poll_on_another_tenants_job_is_404_at_once(idle_api: ServerThread) -> None:
    job_id = httpx.post(
        f"{idle_api.url}/v1/jobs", json=quick_body(marker()), headers=bearer(TENANT_A_KEY)
    ).json()["id"]
    started = time.monotonic()
    answer = httpx.get(
        f"{idle_api.url}/v1/jobs/{job_id}?wait=30", headers=bearer(TENANT_B_KEY), timeout=40
    )
    assert answer.status_code == 404
    assert time.monotonic() - started < 1.0


# --- Prefer: wait ----------------------------------------------------------------------------


def test_prefer_wait_answers_200_with_the_finished_job(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/jobs",
        json=quick_body(marker()),
        headers=[("Prefer", "respond-async, wait=60; x=y"), ("Prefer", "handling=lenient")],
        timeout=70,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert answer.headers["preference-applied"] == "wait=60"
    assert answer.headers["location"] == f"/v1/jobs/{answer.json()['id']}"


def test_prefer_wait_that_runs_out_answers_the_usual_202(idle_api: ServerThread) -> None:
    started = time.monotonic()
    answer = httpx.post(
        f"{idle_api.url}/v1/jobs",
        json=quick_body(marker()),
        headers={**bearer(TENANT_A_KEY), "Prefer": "wait=1"},
    )
    assert 1.0 <= time.monotonic() - started < 3.0
    assert answer.status_code == 202
    assert answer.json()["status"] == "queued"
    assert answer.headers["preference-applied"] == "wait=1"


def test_without_a_wait_preference_the_post_answers_at_once(idle_api: ServerThread) -> None:
    answer = httpx.post(
        f"{idle_api.url}/v1/jobs",
        json=quick_body(marker()),
        headers={**bearer(TENANT_A_KEY), "Prefer": "wait=soon"},
    )
    assert answer.status_code == 202
    assert answer.json()["status"] == "queued"
    assert "preference-applied" not in answer.headers


# --- SSE: one job ----------------------------------------------------------------------------


def test_a_job_stream_sends_every_state_change_then_closes(
    client: httpx.Client, settings: Settings
) -> None:
    job_id = client.post("/v1/jobs", json=quick_body(marker())).json()["id"]
    events = read_job_stream(client, job_id)

    history = job_history(settings, job_id)
    assert [event.id for event in events] == [event.id for event in history]
    # (A slow render may add in_progress, from the reconciler asking fal.)
    assert [event.event for event in events][:3] == [
        "job.queued",
        "job.submitting",
        "job.submitted",
    ]
    assert events[-1].event == "job.completed"
    first, *_, last = (event.data for event in events)
    assert first == {**history[0].to_resource(), "from": None, "to": "queued"}
    assert last["to"] == "completed" and last["from"] in ("submitted", "in_progress")
    assert last["job"]["status"] == "completed"
    assert last["job"]["result"]["video"]["content_type"] == "video/mp4"


def test_a_job_stream_resumes_after_last_event_id(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs", json=quick_body(marker())).json()["id"]
    everything = read_job_stream(client, job_id)
    assert everything[-1].event == "job.completed"

    resumed = read_job_stream(client, job_id, headers={"Last-Event-ID": str(everything[1].id)})
    assert [event.id for event in resumed] == [event.id for event in everything[2:]]
    past_the_end = read_job_stream(client, job_id, headers={"Last-Event-ID": everything[-1].id})
    assert past_the_end == [], "a finished job's stream closes when nothing is left to send"


def test_a_job_stream_of_another_tenant_or_with_a_bad_cursor_is_refused(
    idle_api: ServerThread,
) -> None:
    with httpx.Client(base_url=idle_api.url, headers=bearer(TENANT_A_KEY)) as client:
        job_id = client.post("/v1/jobs", json=quick_body(marker())).json()["id"]
        bad = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "yesterday"})
    other = httpx.get(f"{idle_api.url}/v1/jobs/{job_id}/events", headers=bearer(TENANT_B_KEY))
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == ["headers", "Last-Event-ID"]


# --- SSE: a tenant's jobs --------------------------------------------------------------------


def test_the_tenant_stream_carries_every_change_of_that_tenants_jobs_only(
    system: ServerThread, settings: Settings
) -> None:
    with (
        httpx.Client(base_url=system.url, headers=bearer(TENANT_B_KEY), timeout=30) as b,
        b.stream("GET", "/v1/events") as answer,
    ):
        assert answer.status_code == 200
        # Opened before the jobs exist: "from now on" starts when the answer does.
        mine = b.post("/v1/jobs", json=quick_body(marker())).json()["id"]
        httpx.post(f"{system.url}/v1/jobs", json=quick_body(marker()), headers=bearer(TENANT_A_KEY))
        seen: list[Event] = []
        for event in parse(answer.iter_lines()):
            if event.comments:
                continue
            seen.append(event)
            if event.data["job_id"] == mine and event.event == "job.completed":
                break
    assert {event.data["tenant"] for event in seen} == {"tenant-b"}
    assert [e.id for e in seen if e.data["job_id"] == mine] == [
        e.id for e in job_history(settings, mine)
    ]


def test_a_quiet_stream_sends_heartbeats(idle_api: ServerThread) -> None:
    with httpx.Client(base_url=idle_api.url, headers=bearer(TENANT_A_KEY), timeout=10) as http:
        job_id = http.post("/v1/jobs", json=quick_body(marker())).json()["id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
            blocks = parse(answer.iter_lines())
            assert next(blocks).event == "job.queued"
            heartbeats = [next(blocks) for _ in range(3)]
    assert all(block.comments and block.id is None for block in heartbeats)


def test_tenant_streams_past_the_limit_are_refused_with_503_until_one_closes(
    idle_api: ServerThread,
) -> None:
    with httpx.Client(base_url=idle_api.url, headers=bearer(TENANT_A_KEY), timeout=10) as http:
        with http.stream("GET", "/v1/events") as first:
            assert first.status_code == 200
            refused = http.get("/v1/events")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["content-type"] == "application/problem+json"
        deadline = time.monotonic() + 5
        while (again := http.get("/v1/events", headers={"Last-Event-ID": "0-0"})).status_code:
            if again.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # sse_max_s=5 ends it; a slot freed by the first stream's close lets it in.
        assert again.status_code == 200


# --- the event stream, read with a consumer group ---------------------------------------------


def test_a_consumer_group_reader_receives_every_transition_of_100_jobs_in_order(
    client: httpx.Client, settings: Settings, fal_proxy: FalProxy
) -> None:
    # The real pipeline but for rendering (100 renders would take minutes on a small machine):
    # fal "accepts" each job without running it, and the test sends fal's signed webhook.
    keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
    group = f"test-{uuid.uuid4().hex[:8]}"
    case = marker()

    async def create_group() -> None:
        async with Redis.from_url(settings.redis_url) as redis:
            await redis.xgroup_create(keys.events, group, id="$", mkstream=True)

    asyncio.run(create_group())
    fal_proxy.script(case, *[Fault("swallow")] * 100)
    job_ids = {client.post("/v1/jobs", json=quick_body(case)).json()["id"] for _ in range(100)}
    deadline = time.monotonic() + 60
    while len(fal_proxy.submits_containing(case)) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    for submit in fal_proxy.submits_containing(case):
        assert submit.webhook_url is not None
        job_id = submit.webhook_url.split("?")[0].rsplit("/", 1)[1]
        wait_for(client, job_id, lambda job: job["status"] == "submitted")
        request_id = client.get(f"/v1/jobs/{job_id}").json()["fal_request_id"]
        body = ok_payload(request_id)
        answer = httpx.post(
            submit.webhook_url, content=body, headers=signed_headers(body, request_id)
        )
        assert answer.status_code == 200

    async def consume() -> tuple[dict[str, list[JobEvent]], int]:
        received: dict[str, list[JobEvent]] = {}
        finished: set[str] = set()
        async with Redis.from_url(settings.redis_url) as redis:
            deadline = time.monotonic() + 60
            while finished != job_ids and time.monotonic() < deadline:
                reply = await redis.xreadgroup(
                    group, "consumer-1", {keys.events: ">"}, count=100, block=1000
                )
                for _, entries in reply:
                    for entry_id, fields in entries:
                        event = JobEvent.from_entry(entry_id, fields)
                        if event.job_id in job_ids:
                            received.setdefault(event.job_id, []).append(event)
                            if event.to_status.is_terminal:
                                finished.add(event.job_id)
                        await redis.xack(keys.events, group, entry_id)
            pending = (await redis.xpending(keys.events, group))["pending"]
            await redis.xgroup_destroy(keys.events, group)
        return received, pending

    received, pending = asyncio.run(consume())
    assert set(received) == job_ids, f"{len(job_ids - set(received))} jobs never showed up"
    for job_id, events in received.items():
        assert events == job_history(settings, job_id), job_id
        assert [e.from_status for e in events[1:]] == [e.to_status for e in events[:-1]]
        assert [e.to_status for e in events][::3] == [JobStatus.QUEUED, JobStatus.COMPLETED]
    assert pending == 0, "every entry read was acknowledged"


# --- how soon: within 100 ms of the job's completion -----------------------------------------


@pytest.mark.timeout(300)
def test_long_poll_prefer_wait_and_sse_answer_within_100_ms_of_completion(
    system: ServerThread, settings: Settings
) -> None:
    """From the terminal event's `at_ms` (written by the worker's finishing step) to the
    moment the client has its answer; five jobs per way."""
    per_way = 5
    received_ms: dict[str, dict[str, int]] = {"long-poll": {}, "prefer-wait": {}, "sse": {}}
    lock = threading.Lock()

    def now_ms() -> int:
        return int(time.time() * 1000)

    def note(way: str, job_id: str) -> None:
        at = now_ms()
        with lock:
            received_ms[way][job_id] = at

    def long_poll(http: httpx.Client) -> None:
        job_id = http.post("/v1/jobs", json=quick_body(marker())).json()["id"]
        answer = http.get(f"/v1/jobs/{job_id}", params={"wait": 60}, timeout=70)
        note("long-poll", job_id)
        assert answer.json()["status"] == "completed"

    def prefer_wait(http: httpx.Client) -> None:
        answer = http.post(
            "/v1/jobs", json=quick_body(marker()), headers={"Prefer": "wait=60"}, timeout=70
        )
        note("prefer-wait", answer.json()["id"])
        assert answer.status_code == 200

    def sse(http: httpx.Client) -> None:
        job_id = http.post("/v1/jobs", json=quick_body(marker())).json()["id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=70) as answer:
            for event in parse(answer.iter_lines()):
                if event.event == "job.completed":
                    note("sse", job_id)
                    break

    def run(way: Any) -> None:
        with httpx.Client(base_url=system.url, headers=bearer(TENANT_A_KEY)) as http:
            way(http)

    # In waves of one job per way: the simulator renders in this process, and fifteen renders
    # at once would measure the GIL more than the wake-up.
    for _ in range(per_way):
        threads = [
            threading.Thread(target=run, args=(way,)) for way in (long_poll, prefer_wait, sse)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    figures: dict[str, list[int]] = {}
    for way, by_job in received_ms.items():
        assert len(by_job) == per_way, f"{way}: {len(by_job)} of {per_way} answered"
        figures[way] = sorted(
            at - job_history(settings, job_id)[-1].at_ms for job_id, at in by_job.items()
        )
    print()
    for way, latencies in figures.items():
        print(
            f"  {way}: answered {statistics.median(latencies)} ms (median), "
            f"{max(latencies)} ms (max) after completion; all: {latencies}"
        )
    assert all(max(latencies) < 100 for latencies in figures.values()), figures
