"""Cancelling a job: at once while queued, at fal once there, and fal's word decides the end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from service.app import create_app
from service.settings import Settings
from tests.conftest import (
    CALLBACK_SECRET,
    TENANT_A_KEY,
    TENANT_B_KEY,
    CallbackReceiver,
    bearer,
    i2v_body,
    is_terminal,
    wait_for,
)
from tests.support.falproxy import FalProxy, Fault
from tests.support.servers import ServerThread
from tests.test_fal_webhooks import ok_payload, signed_headers


@pytest.fixture(scope="module")
def idle_client(settings: Settings) -> Iterator[httpx.Client]:
    """An API whose queue no worker reads: its jobs stay queued."""
    values: dict[str, Any] = dict(settings)
    values.update(redis_key_prefix="idlecancel:", arq_queue_name="idlecancel:queue", port=0)
    with (
        ServerThread(create_app(Settings(**values))) as server,
        httpx.Client(base_url=server.url, headers=bearer(TENANT_A_KEY), timeout=10) as http,
    ):
        yield http


def silent_job(
    client: httpx.Client, fal_proxy: FalProxy, **extra: Any
) -> tuple[dict[str, Any], str]:
    """A job fal "accepted" with a fake receipt and never calls back, and its webhook URL."""
    case = f"cancel-{uuid.uuid4().hex[:10]}"
    fal_proxy.script(case, Fault("swallow"))
    job = client.post("/v1/jobs", json={**i2v_body(case), **extra}).json()
    job = wait_for(client, job["id"], lambda j: j["status"] == "submitted")
    [submit] = fal_proxy.submits_containing(case)
    assert submit.webhook_url is not None
    return job, submit.webhook_url


def deliver(webhook_url: str, request_id: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    answer = httpx.post(webhook_url, content=body, headers=signed_headers(body, request_id))
    assert answer.status_code == 200, answer.text


def test_a_queued_job_is_cancelled_at_once_and_never_reaches_fal(
    idle_client: httpx.Client, fal_proxy: FalProxy
) -> None:
    case = f"cancel-{uuid.uuid4().hex[:10]}"
    job = idle_client.post("/v1/jobs", json=i2v_body(case)).json()

    answer = idle_client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    cancelled = answer.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested_at"] and cancelled["completed_at"]
    assert idle_client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"

    again = idle_client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["job_id"] == job["id"]
    assert fal_proxy.submits_containing(case) == []


def test_a_job_at_fal_is_cancelled_there_and_ends_when_fal_confirms(
    client: httpx.Client, fal_proxy: FalProxy, callback_receiver: CallbackReceiver
) -> None:
    callback = {"callback_url": f"{callback_receiver.url}/hooks/cancel"}
    job, webhook_url = silent_job(client, fal_proxy, **callback)
    request_id = job["fal_request_id"]
    fal_proxy.script_call(request_id, Fault("status", 202, {"status": "CANCELLATION_REQUESTED"}))

    answer = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "submitted"
    assert answer.json()["cancel_requested_at"]
    assert ("PUT", f"/fal-ai/veo3.1/requests/{request_id}/cancel") in fal_proxy.calls_to(request_id)

    # fal's word: the request never ran (a queued request cancelled, `client_cancelled`).
    deliver(
        webhook_url,
        request_id,
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "ERROR",
            "error": "Invalid status code: 499",
            "payload": {"detail": "Request cancelled", "error_type": "client_cancelled"},
        },
    )
    ended = wait_for(client, job["id"], lambda j: j["callback"]["status"] == "delivered")
    assert ended["status"] == "cancelled"
    [(headers, raw)] = callback_receiver.for_job(job["id"])
    event = Webhook(CALLBACK_SECRET).verify(raw, headers)
    assert event["type"] == "job.cancelled" and event["data"]["status"] == "cancelled"


def test_fal_answering_already_completed_keeps_the_real_outcome(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    job, webhook_url = silent_job(client, fal_proxy)
    request_id = job["fal_request_id"]
    fal_proxy.script_call(request_id, Fault("status", 400, {"status": "ALREADY_COMPLETED"}))

    answer = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 409, answer.text
    assert client.get(f"/v1/jobs/{job['id']}").json()["cancel_requested_at"] is None

    deliver(webhook_url, request_id, json.loads(ok_payload(request_id)))
    assert wait_for(client, job["id"], is_terminal)["status"] == "completed"


def test_a_cancel_fal_does_not_take_changes_nothing(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    job, _ = silent_job(client, fal_proxy)
    fal_proxy.script_call(
        job["fal_request_id"], Fault("status", 503, {"detail": "runner_scheduling_failure"})
    )

    answer = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    after = client.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "submitted" and after["cancel_requested_at"] is None


def test_another_tenants_job_cannot_be_cancelled(
    idle_client: httpx.Client,
) -> None:
    job = idle_client.post("/v1/jobs", json=i2v_body("cancel-other")).json()
    other = idle_client.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(TENANT_B_KEY))
    assert other.status_code == 404
    assert idle_client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
