"""fal's queue protocol at /fal/, call by call, as fal documents it (shared/fal-protocol.md §1)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from service.app import create_app
from service.settings import Settings
from tests.conftest import CALLBACK_SECRET, TENANT_A_KEY, TENANT_B_KEY, CallbackReceiver, i2v_body
from tests.fal_door.conftest import wait_for_callback
from tests.support.falproxy import FalProxy
from tests.support.servers import ServerThread

ENDPOINT = "fal-ai/veo3.1/fast/image-to-video"


def fal_key(key: str = TENANT_A_KEY) -> dict[str, str]:
    return {"Authorization": f"Key {key}"}


@pytest.fixture
def door(system: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{system.url}/fal", headers=fal_key(), timeout=20) as http:
        yield http


@pytest.fixture(scope="module")
def idle_door(settings: Settings) -> Iterator[httpx.Client]:
    """The door of an API whose queue no worker reads: its requests stay IN_QUEUE."""
    values: dict[str, Any] = dict(settings)
    values.update(redis_key_prefix="idledoor:", arq_queue_name="idledoor:queue", port=0)
    with (
        ServerThread(create_app(Settings(**values))) as server,
        httpx.Client(base_url=f"{server.url}/fal", headers=fal_key(), timeout=10) as http,
    ):
        yield http


def fal_input(marker: str) -> dict[str, Any]:
    return i2v_body(marker)["input"]


def test_submit_answers_fals_receipt_with_the_vidhook_job_id(
    door: httpx.Client, system: ServerThread
) -> None:
    answer = door.post(f"/{ENDPOINT}", json=fal_input("receipt"))
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    job_id = receipt["request_id"]
    base = f"{system.url}/fal/fal-ai/veo3.1/requests/{job_id}"
    assert receipt == {
        "request_id": job_id,
        "gateway_request_id": job_id,
        "status": "IN_QUEUE",
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": receipt["queue_position"],
    }
    assert answer.headers["x-fal-request-id"] == job_id
    job = httpx.get(
        f"{system.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TENANT_A_KEY}"}
    )
    assert job.json()["endpoint"] == ENDPOINT


def test_queued_status_has_a_queue_position_and_logs_only_when_asked(
    idle_door: httpx.Client,
) -> None:
    ids = [
        idle_door.post(f"/{ENDPOINT}", json=fal_input(f"q{n}")).json()["request_id"]
        for n in range(3)
    ]
    positions = []
    for job_id in ids:
        answer = idle_door.get(f"/fal-ai/veo3.1/requests/{job_id}/status")
        assert answer.status_code == 202
        assert answer.json()["status"] == "IN_QUEUE" and answer.json()["logs"] is None
        positions.append(answer.json()["queue_position"])
    assert positions == sorted(positions) and positions[0] < positions[-1]
    for flag in ("1", "true"):
        logs = idle_door.get(f"/fal-ai/veo3.1/requests/{ids[0]}/status", params={"logs": flag})
        assert logs.json()["logs"] == []


def test_the_status_stream_sends_fals_statuses_and_closes_after_completed(
    door: httpx.Client,
) -> None:
    job_id = door.post(f"/{ENDPOINT}", json=fal_input("stream")).json()["request_id"]
    events: list[dict[str, Any]] = []
    with door.stream(
        "GET", f"/fal-ai/veo3.1/requests/{job_id}/status/stream", params={"logs": "1"}
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    assert events[-1]["status"] == "COMPLETED"
    assert {event["status"] for event in events} <= {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert all(event["request_id"] == job_id for event in events)
    result = door.get(f"/fal-ai/veo3.1/requests/{job_id}")
    assert result.status_code == 200 and result.json()["video"]["url"].endswith(".mp4")
    assert result.headers["x-fal-request-id"] == job_id


def test_unknown_requests_and_other_tenants_requests_are_not_found(
    door: httpx.Client, idle_door: httpx.Client
) -> None:
    job_id = idle_door.post(f"/{ENDPOINT}", json=fal_input("mine")).json()["request_id"]
    other = idle_door.get(f"/fal-ai/veo3.1/requests/{job_id}/status", headers=fal_key(TENANT_B_KEY))
    assert (other.status_code, other.json()["status"]) == (404, "NOT_FOUND")
    wrong_app = idle_door.get(f"/fal-ai/veo2/requests/{job_id}/status")
    assert wrong_app.status_code == 404
    for path in ("", "/status", "/cancel"):
        method = "PUT" if path == "/cancel" else "GET"
        missing = door.request(method, f"/fal-ai/veo3.1/requests/job_nothing{path}")
        assert missing.status_code == 404 and missing.json()["status"] == "NOT_FOUND"


def test_a_result_asked_for_before_completion_is_a_400(idle_door: httpx.Client) -> None:
    job_id = idle_door.post(f"/{ENDPOINT}", json=fal_input("early")).json()["request_id"]
    early = idle_door.get(f"/fal-ai/veo3.1/requests/{job_id}")
    assert early.status_code == 400 and "detail" in early.json()


def test_the_door_wants_a_vidhook_key_and_never_takes_the_real_fal_key(
    system: ServerThread, settings: Settings
) -> None:
    for headers in (
        {},
        fal_key("not-a-vidhook-key-000000"),
        fal_key(settings.fal_key.get_secret_value()),
    ):
        answer = httpx.post(f"{system.url}/fal/{ENDPOINT}", json=fal_input("auth"), headers=headers)
        assert answer.status_code == 401
        assert isinstance(answer.json()["detail"], str)


def test_an_unknown_endpoint_is_fals_404_and_a_passthrough_is_accepted(
    door: httpx.Client, fal_proxy: FalProxy
) -> None:
    unknown = door.post("/fal-ai/veo4/magic", json={"prompt": "x"})
    assert unknown.status_code == 404 and "Unknown endpoint" in unknown.json()["detail"]
    passthrough = door.post("/fal-ai/kling-video/v2/image-to-video", json={"prompt": "x"})
    assert passthrough.status_code == 200
    assert "/fal/fal-ai/kling-video/requests/" in passthrough.json()["status_url"]


def test_a_body_that_is_not_json_is_fals_422_and_an_unsafe_fal_webhook_is_refused(
    door: httpx.Client, fal_proxy: FalProxy
) -> None:
    case = f"webhook-{uuid.uuid4().hex[:8]}"
    broken = door.post(
        f"/{ENDPOINT}", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    unsafe = door.post(
        f"/{ENDPOINT}", json=fal_input(case), params={"fal_webhook": "http://user:pw@example.com/x"}
    )
    assert unsafe.status_code == 422
    assert unsafe.json()["detail"][0]["loc"][:2] == ["query", "fal_webhook"]
    assert fal_proxy.submits_containing(case) == []


def test_a_request_fal_fails_is_completed_with_its_error_and_the_fal_webhook_says_error(
    door: httpx.Client, callback_receiver: CallbackReceiver
) -> None:
    # Well-formed, so intake accepts it; fal cannot download the image and fails it late.
    bad = {**fal_input("late-failure"), "image_url": "http://127.0.0.1:9/missing.jpg"}
    hook = f"{callback_receiver.url}/fal-hook/failure"
    job_id = door.post(f"/{ENDPOINT}", json=bad, params={"fal_webhook": hook}).json()["request_id"]
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = door.get(f"/fal-ai/veo3.1/requests/{job_id}/status")
        status = answer.json()
        if answer.status_code == 200:
            break
        time.sleep(0.05)
    assert status["status"] == "COMPLETED" and status["error_type"] == "file_download_error"

    result = door.get(f"/fal-ai/veo3.1/requests/{job_id}")
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "image_url"]
    [(headers, raw)] = wait_for_callback(callback_receiver, job_id)
    payload = Webhook(CALLBACK_SECRET).verify(raw, headers)
    assert payload["status"] == "ERROR" and payload["error"] == "Invalid status code: 422"
    assert payload["payload"] == result.json()
