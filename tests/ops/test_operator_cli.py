"""`vidhook jobs|callbacks|keys`: the operator's commands, run as the real command on Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import TENANT_A_KEY, CallbackReceiver, bearer, i2v_body, is_terminal, wait_for
from tests.support.servers import ServerThread


def vidhook(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    # The service's own environment, as on an API pod (`jobs cancel` needs all of it).
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "ARQ_QUEUE_NAME": settings.arq_queue_name,
        "FAL_KEY": settings.fal_key.get_secret_value(),
        "FAL_QUEUE_BASE_URL": str(settings.fal_queue_base_url),
        "FAL_JWKS_URL": str(settings.fal_jwks_url),
        "PUBLIC_BASE_URL": str(settings.public_base_url),
        "API_KEYS": settings.api_keys,
        "CALLBACK_SIGNING_SECRET": settings.callback_signing_secret.get_secret_value(),
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_jobs_list_json_lists_what_this_test_made(client: httpx.Client, settings: Settings) -> None:
    since_ms = int(time.time() * 1000) - 1
    made = {client.post("/v1/jobs", json=i2v_body(f"cli-{n}")).json()["id"] for n in range(2)}
    run = vidhook(settings, "jobs", "list", "--json", "--created-after", str(since_ms))
    assert run.returncode == 0, run.stderr
    listed = json.loads(run.stdout)
    assert {job["id"] for job in listed["data"]} == made
    assert {job["tenant"] for job in listed["data"]} == {"tenant-a"}
    table = vidhook(settings, "jobs", "list", "--tenant", "tenant-a", "--limit", "2")
    assert table.returncode == 0 and table.stdout.startswith("ID ")
    assert all(job_id in table.stdout for job_id in made)


def test_jobs_show_prints_one_job(client: httpx.Client, settings: Settings) -> None:
    job_id = client.post("/v1/jobs", json=i2v_body("cli-show")).json()["id"]
    run = vidhook(settings, "jobs", "show", job_id, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["id"] == job_id
    assert vidhook(settings, "jobs", "show", "job_missing").returncode == 1


def test_a_stored_key_works_until_revoked_and_then_at_once_not(
    system: ServerThread, settings: Settings
) -> None:
    created = vidhook(settings, "keys", "create", "tenant-c", "--label", "ci", "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    with httpx.Client(base_url=system.url, headers=bearer(made["key"])) as tenant_c:
        job = tenant_c.post("/v1/jobs", json=i2v_body("stored-key"))
        assert job.status_code == 202, job.text
        assert tenant_c.get(f"/v1/jobs/{job.json()['id']}").status_code == 200
        listed = json.loads(vidhook(settings, "keys", "list", "--json").stdout)
        assert {"id": made["id"], "tenant": "tenant-c", "label": "ci"}.items() <= next(
            k for k in listed if k["id"] == made["id"]
        ).items()
        assert made["key"] not in json.dumps(listed)
        revoked = vidhook(settings, "keys", "revoke", made["id"])
        assert revoked.returncode == 0, revoked.stderr
        assert tenant_c.get(f"/v1/jobs/{job.json()['id']}").status_code == 401


@pytest.fixture(scope="module")
def idle_api(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """An API whose queue no worker reads: its jobs stay queued."""
    values: dict[str, Any] = dict(settings)
    values.update(redis_key_prefix="opsidle:", arq_queue_name="opsidle:queue", port=0)
    idle = Settings(**values)
    with ServerThread(create_app(idle)) as server:
        yield server.url, idle


def test_cancel_and_retry_a_queued_job(idle_api: tuple[str, Settings]) -> None:
    url, idle = idle_api
    with httpx.Client(base_url=url, headers=bearer(TENANT_A_KEY)) as http:
        job_id = http.post("/v1/jobs", json=i2v_body("cli-cancel")).json()["id"]
        # Its dispatch task is still queued: a retry has nothing to add.
        again = vidhook(idle, "jobs", "retry", job_id, "--json")
        assert again.returncode == 1 and "already queued" in json.loads(again.stdout)["message"]
        assert vidhook(idle, "jobs", "cancel", job_id).returncode == 0
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
        assert vidhook(idle, "jobs", "cancel", job_id).returncode == 1
        assert vidhook(idle, "jobs", "retry", job_id).returncode == 1


def test_callbacks_redeliver_sends_the_same_message_again(
    client: httpx.Client, settings: Settings, callback_receiver: CallbackReceiver
) -> None:
    body = {**i2v_body("cli-redeliver"), "callback_url": f"{callback_receiver.url}/redeliver"}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    wait_for(client, job_id, lambda j: is_terminal(j) and j["callback"]["status"] == "delivered")
    run = vidhook(settings, "callbacks", "redeliver", job_id)
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 15
    while len(callback_receiver.for_job(job_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first, second = callback_receiver.for_job(job_id)
    assert first[0]["webhook-id"] == second[0]["webhook-id"] and first[1] == second[1]
