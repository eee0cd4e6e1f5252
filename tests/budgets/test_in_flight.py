"""FAL_MAX_IN_FLIGHT: fal never holds more of our requests than the budget, counted at the
simulator over HTTP, across a worker SIGKILL too; a tenant's flood delays another tenant's
single job by at most one free slot."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import httpx

from service.settings import Settings
from tests.budgets.conftest import HeldCounter, budget_settings, leases, stack, wait_until
from tests.conftest import TENANT_B_KEY, bearer, i2v_body, is_terminal
from tests.test_worker_lifecycle import WorkerProcess


def create(http: httpx.Client, marker: str, **headers: str) -> str:
    answer = http.post("/v1/jobs", json=i2v_body(marker), headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def all_finished(http: httpx.Client, job_ids: list[str], timeout_s: float) -> list[dict]:
    finished: dict[str, dict] = {}

    def check() -> bool:
        for job_id in job_ids:
            if job_id not in finished:
                job = http.get(f"/v1/jobs/{job_id}").json()
                if is_terminal(job):
                    finished[job_id] = job
        return len(finished) == len(job_ids)

    wait_until(check, timeout_s, f"{len(job_ids)} jobs to finish ({len(finished)} did)")
    return [finished[job_id] for job_id in job_ids]


def test_fal_never_holds_more_than_the_budget_and_every_job_completes(
    settings: Settings, counter: HeldCounter
) -> None:
    config = budget_settings(settings, counter, fal_max_in_flight=3)
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        job_ids = [create(http, f"{tag}-{i}") for i in range(8)]
        queued = [http.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in job_ids]
        jobs = all_finished(http, job_ids, timeout_s=150)
    assert {job["status"] for job in jobs} == {"completed"}
    # A job waiting for a slot stayed queued: at most 3 were ever past it at once.
    assert queued.count("queued") >= 8 - 3
    print(f"fal held at each submit: {counter.held_at_submit}")
    assert counter.max_held == 3, counter.held_at_submit
    assert len(counter.submits) == 8
    assert leases(config) == 0


def test_the_budget_holds_across_a_worker_sigkill(
    settings: Settings, counter: HeldCounter, tmp_path: Path
) -> None:
    config = budget_settings(
        settings, counter, fal_max_in_flight=3, fal_status_timeout_s=1.0, callback_timeout_s=2.0
    )
    workers: list[WorkerProcess] = []
    try:
        with stack(config, worker=False) as http:
            workers.append(WorkerProcess(config, tmp_path / "worker-a.log"))
            tag = uuid.uuid4().hex[:8]
            job_ids = [create(http, f"{tag}-{i}") for i in range(7)]
            wait_until(lambda: len(counter.submits) >= 4, 30, "the first worker's submits")
            assert workers[0].stop(signal.SIGKILL) == -signal.SIGKILL
            # The killed worker's leases are not given back while fal may hold its requests:
            # no new submit goes out beyond the budget while the jobs wait for a worker.
            time.sleep(1.0)
            assert leases(config) <= 3
            workers.append(WorkerProcess(config, tmp_path / "worker-b.log"))
            jobs = all_finished(http, job_ids, timeout_s=150)
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL)
    assert {job["status"] for job in jobs} == {"completed"}, [j["status"] for j in jobs]
    print(f"fal held at each submit: {counter.held_at_submit}")
    assert counter.max_held <= 3, counter.held_at_submit
    assert leases(config) == 0


def test_a_second_tenants_job_reaches_fal_within_one_slot_of_a_flood(
    settings: Settings, counter: HeldCounter
) -> None:
    config = budget_settings(settings, counter, fal_max_in_flight=3)
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        flood = [create(http, f"{tag}-a{i}") for i in range(50)]
        single = create(http, f"{tag}-b", **bearer(TENANT_B_KEY))
        wait_until(lambda: counter.submits_containing(f"{tag}-b"), 120, "tenant B's submit")
        order = [s for s in counter.submits if tag.encode() in s[1]]
        position = next(i for i, s in enumerate(order) if f"{tag}-b".encode() in s[1])
        # The 3 admitted at once, then at most one more of the flood, then B's.
        print(f"tenant B's job was submit #{position + 1} of the flood's")
        assert position <= 3 + 1, position
        http.post(f"/v1/jobs/{single}/cancel", headers=bearer(TENANT_B_KEY))
        for job_id in flood:
            http.post(f"/v1/jobs/{job_id}/cancel")
        wait_until(lambda: leases(config) == 0, 30, "every lease to be given back")


def test_tenant_max_in_flight_bounds_one_tenant_while_another_uses_the_rest(
    settings: Settings, counter: HeldCounter
) -> None:
    limits = '{"tenant-a": {"max_in_flight": 1}}'
    config = budget_settings(settings, counter, fal_max_in_flight=4, tenant_limits=limits)
    with stack(config) as http:
        tag = uuid.uuid4().hex[:8]
        a_jobs = [create(http, f"{tag}-a{i}") for i in range(4)]
        b_jobs = [create(http, f"{tag}-b{i}", **bearer(TENANT_B_KEY)) for i in range(3)]
        time.sleep(0.2)
        usage = http.get("/v1/usage").json()
        assert usage["in_flight"]["max"] == 1
        assert usage["in_flight"]["count"] <= 1
        all_finished(http, a_jobs, timeout_s=150)
        b_http_jobs = [
            http.get(f"/v1/jobs/{j}", headers=bearer(TENANT_B_KEY)).json() for j in b_jobs
        ]
    assert all(is_terminal(job) for job in b_http_jobs)
    a_submits = [s for s in counter.submits if f"{tag}-a".encode() in s[1]]
    assert len(a_submits) == 4
    assert counter.max_held_containing(f"{tag}-a") == 1
    # Tenant B used the slots tenant A could not: more than one of its jobs at fal at once.
    assert counter.max_held_containing(f"{tag}-b") >= 2
