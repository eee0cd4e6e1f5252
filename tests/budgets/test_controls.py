"""Cancel with the budget, the pause on a revoked key, spend caps and GET /v1/usage, poll mode:
each against the simulator, through the counting proxy."""

from __future__ import annotations

import json
import threading
import uuid

import httpx

from service.events import parse_history
from service.settings import Settings
from tests.budgets.conftest import HeldCounter, budget_settings, leases, stack, wait_until
from tests.budgets.test_in_flight import all_finished, create
from tests.conftest import TENANT_B_KEY, bearer, i2v_body


def test_a_queued_cancel_never_reaches_fal_and_a_cancel_at_fal_calls_fals_cancel(
    settings: Settings, counter: HeldCounter
) -> None:
    config = budget_settings(settings, counter, fal_max_in_flight=1)
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        at_fal = create(http, f"{tag}-first")
        waiting = create(http, f"{tag}-waiting")
        assert http.get(f"/v1/jobs/{waiting}").json()["status"] == "queued"
        cancelled = http.post(f"/v1/jobs/{waiting}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        # Its estimated spend is refunded: only the first job counts today.
        usage = http.get("/v1/usage").json()
        first_cost = http.get(f"/v1/jobs/{at_fal}").json()["estimated_cost_usd"]
        assert usage["today"]["spend_usd"] == first_cost

        wait_until(lambda: counter.submits_containing(f"{tag}-first"), 30, "the first submit")
        wait_until(lambda: http.get(f"/v1/jobs/{at_fal}").json()["fal_request_id"], 30, "fal's id")
        answer = http.post(f"/v1/jobs/{at_fal}/cancel")
        assert answer.status_code in (200, 202, 409), answer.text
        request_id = http.get(f"/v1/jobs/{at_fal}").json()["fal_request_id"]
        if answer.status_code != 409:  # 409: it had finished first
            assert counter.calls_to(f"/requests/{request_id}/cancel", "PUT")
        all_finished(http, [at_fal], timeout_s=60)
        # A job after them takes the slot the cancelled one gave back.
        later = create(http, f"{tag}-later")
        all_finished(http, [later], timeout_s=60)
    assert counter.submits_containing(f"{tag}-waiting") == []
    assert leases(config) == 0


def test_a_revoked_key_pauses_dispatch_then_it_resumes_without_failing_a_job(
    settings: Settings, counter: HeldCounter
) -> None:
    config = budget_settings(settings, counter, fal_max_in_flight=3, fal_pause_probe_s=0.3)
    with stack(config) as http:
        counter.revoked = True
        tag = uuid.uuid4().hex[:8]
        job_ids = [create(http, f"{tag}-{i}") for i in range(4)]

        def paused() -> bool:
            return http.get("/readyz").json()["checks"].get("dispatch") == "paused"

        wait_until(paused, 30, "/readyz to report the pause")
        ready = http.get("/readyz").json()
        assert ready["dispatch_paused"]["status_code"] == 401
        assert "refused our key" in ready["dispatch_paused"]["reason"]
        refused = len(counter.submits)
        # The jobs wait, queued; no job is failed and no more submits are sent while paused.
        wait_until(
            lambda: all(http.get(f"/v1/jobs/{j}").json()["status"] == "queued" for j in job_ids),
            10,
            "every job back in line",
        )
        threading.Event().wait(1.0)
        assert len(counter.submits) == refused, "submits went out while paused"
        assert leases(config) == 0
        counter.revoked = False
        jobs = all_finished(http, job_ids, timeout_s=150)
        assert http.get("/readyz").json()["checks"]["dispatch"] == "running"
    assert {job["status"] for job in jobs} == {"completed"}
    assert counter.max_held <= 3
    events = [e for job_id in job_ids for e in job_events(http, config, job_id)]
    assert all(e["to"] != "failed" for e in events)


def job_events(http: httpx.Client, config: Settings, job_id: str) -> list[dict]:
    from redis import Redis

    with Redis.from_url(config.redis_url) as redis:
        raw = redis.hmget(
            f"{config.redis_key_prefix}job:{job_id}", ["history", "tenant", "endpoint"]
        )
    history, tenant, endpoint = (value.decode() for value in raw)
    return [event.to_resource() for event in parse_history(history, job_id, tenant, endpoint)]


def test_a_job_over_the_spend_cap_is_refused_at_intake_and_never_reaches_fal(
    settings: Settings, counter: HeldCounter
) -> None:
    # A fast 4 s job with audio is $0.60: the cap allows one a day, not two.
    limits = json.dumps({"tenant-a": {"daily_usd": 1.0, "monthly_usd": 100, "max_in_flight": 2}})
    config = budget_settings(settings, counter, tenant_limits=limits)
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        first = create(http, f"{tag}-ok")
        refused = http.post("/v1/jobs", json=i2v_body(f"{tag}-over"))
        assert refused.status_code == 402, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"] == "https://vidhook.dev/problems/spend-cap-exceeded"
        assert problem["period"] == "daily"
        assert problem["cap_usd"] == 1.0
        assert problem["spent_usd"] == 0.6
        assert problem["resets_at"].endswith("T00:00:00Z")
        usage = http.get("/v1/usage").json()
        assert usage["today"]["spend_usd"] == 0.6
        assert usage["today"]["cap_usd"] == 1.0
        assert usage["month"]["spend_usd"] == 0.6
        assert usage["month"]["cap_usd"] == 100
        assert usage["limits"]["max_in_flight"] == 2
        # Another tenant has no cap and its own figures.
        other = http.get("/v1/usage", headers=bearer(TENANT_B_KEY)).json()
        assert other["today"] == {"date": usage["today"]["date"], "spend_usd": 0.0, "cap_usd": None}
        all_finished(http, [first], timeout_s=60)
    assert counter.submits_containing(f"{tag}-over") == []


def test_concurrent_requests_cannot_overshoot_the_cap(
    settings: Settings, counter: HeldCounter
) -> None:
    # Room for exactly three $0.60 jobs; twelve arrive at once.
    limits = json.dumps({"tenant-a": {"daily_usd": 1.8}})
    config = budget_settings(settings, counter, tenant_limits=limits)
    with stack(config, worker=False) as http:
        tag = uuid.uuid4().hex[:8]
        codes: list[int] = []
        lock = threading.Lock()

        def post(i: int) -> None:
            with httpx.Client(base_url=str(http.base_url), headers=http.headers) as own:
                code = own.post("/v1/jobs", json=i2v_body(f"{tag}-{i}")).status_code
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(codes) == [202] * 3 + [402] * 9
        assert http.get("/v1/usage").json()["today"]["spend_usd"] == 1.8


def test_poll_mode_runs_end_to_end_without_public_base_url(
    settings: Settings, counter: HeldCounter
) -> None:
    config = budget_settings(
        settings, counter, fal_poll_interval_s=0.2, fal_poll_max_interval_s=1.0
    ).model_copy(update={"public_base_url": None})
    assert config.poll_mode
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        job_ids = [create(http, f"{tag}-{i}") for i in range(2)]
        jobs = all_finished(http, job_ids, timeout_s=90)
    assert {job["status"] for job in jobs} == {"completed"}
    submits = counter.submits_containing(tag)
    assert len(submits) == 2
    assert all(webhook is None for _, _, webhook, _ in submits), "poll mode sent fal_webhook"
    polls = [
        len(counter.calls_to(f"/requests/{job['fal_request_id']}/status", "GET")) for job in jobs
    ]
    # The counter's own per-submit checks also GET status; only ours carry logs=1 (see fal.py).
    print(f"poll mode: status GETs per job {polls}")
    assert all(poll >= 1 for poll in polls)


def test_a_429_is_retried_after_its_retry_after_and_shrinks_the_budget_meanwhile(
    settings: Settings, counter: HeldCounter
) -> None:
    from redis import Redis

    config = budget_settings(settings, counter, fal_max_in_flight=3)
    counter.refusals.append((429, {"detail": "Too many requests"}, {"Retry-After": "2"}))
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        job_ids = [create(http, f"{tag}-{i}") for i in range(3)]
        wait_until(lambda: counter.submits and counter.submits[0][3] == 429, 20, "the 429")
        with Redis.from_url(config.redis_url) as redis:
            shrunk = redis.get(f"{config.redis_key_prefix}budget:shrunk")
        assert shrunk is not None and int(shrunk) <= 2, shrunk
        jobs = all_finished(http, job_ids, timeout_s=120)
    assert {job["status"] for job in jobs} == {"completed"}
    refused_body = counter.submits[0][1]
    retried_at = [
        at
        for at, s in zip(counter.submit_times, counter.submits, strict=True)
        if s[1] == refused_body
    ]
    assert len(retried_at) == 2
    assert retried_at[1] - retried_at[0] >= 2.0, "Retry-After was not honoured"
