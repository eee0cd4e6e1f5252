"""The official fal_client (PyPI, unmodified) against vidhook's /fal/ door, vidhook against the
simulator: every call behaves as it does against fal, and each job is one submission at fal."""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import httpx
from standardwebhooks import Webhook

from service.catalog import SUPPORTED_ENDPOINTS
from tests.conftest import (
    CALLBACK_SECRET,
    TENANT_A_KEY,
    CallbackReceiver,
    bearer,
    i2v_body,
)
from tests.fal_door.conftest import FalClientRunner, wait_for_callback
from tests.support.falproxy import FalProxy
from tests.support.servers import ServerThread

ENDPOINT = "fal-ai/veo3.1/fast/image-to-video"


def fal_input(marker: str, **overrides: Any) -> dict[str, Any]:
    return {**i2v_body(marker)["input"], **overrides}


def marker() -> str:
    return f"falclient-{uuid.uuid4().hex[:12]}"


def test_subscribe_returns_the_video_and_the_job_is_a_vidhook_job(
    fal_client_runner: FalClientRunner,
    tls_api: ServerThread,
    fal_proxy: FalProxy,
    system: ServerThread,
) -> None:
    case = marker()
    seen = fal_client_runner.run(tls_api, "subscribe", endpoint=ENDPOINT, arguments=fal_input(case))

    assert seen["result"]["video"]["url"].endswith(".mp4")
    assert seen["result"]["video"]["content_type"] == "video/mp4"
    kinds = [update["kind"] for update in seen["updates"]]
    assert kinds[-1] == "Completed" and set(kinds) <= {"Queued", "InProgress", "Completed"}
    assert seen["updates"][-1]["logs"] == [] and seen["updates"][-1]["error"] is None
    job = httpx.get(f"{system.url}/v1/jobs/{seen['request_id']}", headers=bearer(TENANT_A_KEY))
    assert job.json()["status"] == "completed"
    assert job.json()["result"] == seen["result"]
    assert len(fal_proxy.submits_containing(case)) == 1
    print(f"fal_client.subscribe round trip: {seen['elapsed_s']:.2f}s")


def test_submit_status_and_get_follow_fals_protocol_with_the_fal_webhook_signed(
    fal_client_runner: FalClientRunner,
    tls_api: ServerThread,
    fal_proxy: FalProxy,
    callback_receiver: CallbackReceiver,
) -> None:
    case = marker()
    seen = fal_client_runner.run(
        tls_api,
        "submit_status_get",
        endpoint=ENDPOINT,
        arguments=fal_input(case),
        webhook_url=f"{callback_receiver.url}/fal-hook",
    )

    request_id = seen["request_id"]
    assert request_id.startswith("job_")
    base = f"{tls_api.url}/fal/fal-ai/veo3.1/requests/{request_id}"
    assert seen["urls"] == [f"{base}/status", base, f"{base}/cancel"]
    assert seen["first_status"]["kind"] in ("Queued", "InProgress", "Completed")
    assert seen["result"]["video"]["url"].endswith(".mp4")
    assert seen["final_status"]["kind"] == "Completed"
    assert seen["final_status"]["metrics"] == {}
    assert seen["result_again"] == seen["result"]
    assert len(fal_proxy.submits_containing(case)) == 1

    # The caller's own fal_webhook gets fal's payload, signed as vidhook's callbacks are.
    deliveries = wait_for_callback(callback_receiver, request_id)
    [(headers, raw)] = deliveries
    payload = Webhook(CALLBACK_SECRET).verify(raw, headers)
    assert payload == {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": seen["result"],
    }


def test_cancel_of_a_queued_request_ends_it_without_reaching_fal(
    fal_client_runner: FalClientRunner, idle_tls_api: ServerThread, fal_proxy: FalProxy
) -> None:
    case = marker()
    seen = fal_client_runner.run(
        idle_tls_api, "cancel_queued", endpoint=ENDPOINT, arguments=fal_input(case)
    )

    assert seen["before"]["kind"] == "Queued"
    assert isinstance(seen["before"]["position"], int)
    assert seen["after"]["kind"] == "Completed"
    assert seen["after"]["error_type"] == "client_cancelled"
    assert seen["get"]["raised"] and seen["get"]["status_code"] == 499
    assert seen["get"]["headers"]["x-fal-request-id"] == seen["request_id"]
    assert seen["cancel_again"]["raised"] and seen["cancel_again"]["status_code"] == 400
    assert seen["cancel_again"]["body"] == {"status": "ALREADY_COMPLETED"}
    assert fal_proxy.submits_containing(case) == []


def test_an_invalid_input_is_fals_422_detail_and_fal_is_not_called(
    fal_client_runner: FalClientRunner, tls_api: ServerThread, fal_proxy: FalProxy
) -> None:
    case = marker()
    arguments = fal_input(case, durration="8s", resolution="8k")
    del arguments["image_url"]
    seen = fal_client_runner.run(tls_api, "invalid", endpoint=ENDPOINT, arguments=arguments)

    assert seen["raised"] and seen["status_code"] == 422
    by_loc = {tuple(item["loc"]): item for item in seen["body"]["detail"]}
    assert set(by_loc) == {("body", "durration"), ("body", "resolution"), ("body", "image_url")}
    assert by_loc[("body", "durration")]["type"] == "unknown_field"
    assert by_loc[("body", "durration")]["ctx"]["suggestion"] == "duration"
    assert by_loc[("body", "resolution")]["ctx"]["allowed"] == ["720p", "1080p", "4k"]
    assert by_loc[("body", "image_url")]["type"] == "missing"
    assert seen["message"] == seen["body"]["detail"]
    assert fal_proxy.submits_containing(case) == []


def test_the_fal_door_refuses_what_v1_refuses_with_the_same_problems(
    tls_api: ServerThread, tls_files: Any, client: httpx.Client
) -> None:
    for endpoint in SUPPORTED_ENDPOINTS:
        bad_input = {"prompt": "", "duration": "99s"}
        v1 = client.post("/v1/jobs", json={"endpoint": endpoint, "input": bad_input}).json()
        fal = httpx.post(
            f"{tls_api.url}/fal/{endpoint}",
            json=bad_input,
            headers={"Authorization": f"Key {TENANT_A_KEY}"},
            verify=ssl.create_default_context(cafile=tls_files.ca_pem),
        )
        assert fal.status_code == 422
        assert [(["body", *e["path"][1:]], e["type"]) for e in v1["errors"]] == [
            (item["loc"], item["type"]) for item in fal.json()["detail"]
        ]
