"""fal's queue protocol: submit, status codes and fields, result, cancel, auth, unknown ids."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.simulator.conftest import FAL_KEY, Sim
from tests.simulator.helpers import Receiver

I2V = "fal-ai/veo3.1/image-to-video"


def _valid_i2v(receiver: Receiver) -> dict[str, Any]:
    return {"prompt": "p", "image_url": f"{receiver.url}/assets/landscape.png", "duration": "4s"}


def _slow_failing_i2v(receiver: Receiver) -> dict[str, Any]:
    # Holds its slot for a second while the (missing) image downloads, then fails: no render.
    return {"prompt": "p", "image_url": f"{receiver.url}/slow/missing.png?delay_s=1"}


def _invalid_i2v() -> dict[str, Any]:
    # Fails validation instantly: no render, no inference delay.
    return {"image_url": "data:image/png;base64,AAAA"}


def test_submit_answers_in_queue_with_owner_app_urls(sim: Sim) -> None:
    submitted = sim.fal.submit("fal-ai/veo3.1/fast/extend-video", _invalid_i2v())
    request_id = submitted["request_id"]
    base = f"{sim.config.public_url}/fal-ai/veo3.1/requests/{request_id}"
    assert submitted == {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "IN_QUEUE",
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": 0,
    }


def test_status_goes_202_in_queue_and_in_progress_then_200_completed(
    slow_sim: Sim, receiver: Receiver
) -> None:
    fal = slow_sim.fal
    first = fal.submit(I2V, _valid_i2v(receiver))
    # Invalid input: it queues like any request, then fails at once when its turn comes.
    second = fal.submit(I2V, _invalid_i2v())
    assert second["queue_position"] == 0

    # fal_client (Python) sends logs=true, the JS client logs=1: both work.
    running = fal.http.get(first["status_url"], params={"logs": "true"})
    assert running.status_code == 202
    assert running.json()["status"] == "IN_PROGRESS"
    assert isinstance(running.json()["logs"], list)
    queued = fal.http.get(second["status_url"])
    assert queued.status_code == 202
    assert queued.json()["status"] == "IN_QUEUE"
    assert queued.json()["queue_position"] == 0
    assert queued.json()["logs"] is None

    early = fal.http.get(second["response_url"])
    assert early.status_code == 400
    assert early.json() == {"detail": "Request is still in progress"}

    done = fal.wait_completed(first)
    assert done["status"] == "COMPLETED"
    assert done["metrics"]["inference_time"] >= slow_sim.config.delay_s
    assert done["logs"]
    assert all(e.keys() >= {"message", "timestamp", "level", "source"} for e in done["logs"])
    assert "error" not in done
    assert fal.wait_completed(second)["error_type"] == "missing"


def test_status_and_result_accept_the_full_endpoint_id_path(sim: Sim) -> None:
    submitted = sim.fal.submit(I2V, _invalid_i2v())
    sim.fal.wait_completed(submitted)
    request_id = submitted["request_id"]
    full = f"/{I2V}/requests/{request_id}"
    assert sim.fal.http.get(f"{full}/status").status_code == 200
    assert sim.fal.http.get(full).status_code == 422
    # Another app's prefix does not find it.
    other = sim.fal.http.get(f"/fal-ai/veo2/requests/{request_id}/status")
    assert other.status_code == 404


def test_unknown_request_id_is_404_not_found_everywhere(sim: Sim) -> None:
    base = "/fal-ai/veo3.1/requests/00000000-0000-0000-0000-000000000000"
    for response in (
        sim.fal.http.get(f"{base}/status"),
        sim.fal.http.get(base),
        sim.fal.http.put(f"{base}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json() == {"status": "NOT_FOUND"}


def test_missing_or_wrong_key_is_401(sim: Sim) -> None:
    url = f"{sim.url}/{I2V}"
    assert httpx.post(url, json={"prompt": "p"}).status_code == 401
    bearer = {"Authorization": f"Bearer {FAL_KEY}"}
    assert httpx.post(url, json={"prompt": "p"}, headers=bearer).status_code == 401
    wrong = httpx.post(url, json={"prompt": "p"}, headers={"Authorization": "Key nope"})
    assert wrong.status_code == 401
    assert "detail" in wrong.json()
    submitted = sim.fal.submit(I2V, _invalid_i2v())
    assert httpx.get(submitted["status_url"]).status_code == 401
    assert httpx.get(submitted["response_url"]).status_code == 401
    assert httpx.put(submitted["cancel_url"]).status_code == 401


def test_unknown_endpoint_is_404_and_bad_bodies_are_422(sim: Sim) -> None:
    assert sim.fal.http.post("/fal-ai/veo3/image-to-video", json={}).status_code == 404
    not_json = sim.fal.http.post(
        I2V, content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    assert not_json.json()["detail"][0]["type"] == "json_invalid"
    not_object = sim.fal.http.post(I2V, json=["prompt"])
    assert not_object.status_code == 422
    assert not_object.json()["detail"][0]["loc"] == ["body"]
    bad_hook = sim.fal.http.post(I2V, json={}, params={"fal_webhook": "ftp://x"})
    assert bad_hook.status_code == 422


def test_cancel_of_queued_request_never_runs_it_and_sends_error_webhook(
    slow_sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    fal = slow_sim.fal
    running = fal.submit(I2V, _slow_failing_i2v(receiver))
    key, webhook = hook()
    queued = fal.submit(I2V, _valid_i2v(receiver), webhook=webhook)

    cancel = fal.http.put(queued["cancel_url"])
    assert cancel.status_code == 202
    assert cancel.json() == {"status": "CANCELLATION_REQUESTED"}

    status = fal.http.get(queued["status_url"]).json()
    assert status["status"] == "COMPLETED"
    assert status["error_type"] == "client_cancelled"
    result = fal.http.get(queued["response_url"])
    assert result.status_code == 499
    assert result.json() == {"detail": "Request cancelled", "error_type": "client_cancelled"}
    [delivery] = receiver.wait(key)
    assert b'"status":"ERROR"' in delivery.body

    again = fal.http.put(queued["cancel_url"])
    assert again.status_code == 400
    assert again.json() == {"status": "ALREADY_COMPLETED"}
    fal.wait_completed(running)


def test_cancel_of_running_request_is_accepted_but_it_runs_to_its_own_end(
    slow_sim: Sim, receiver: Receiver
) -> None:
    fal = slow_sim.fal
    submitted = fal.submit(I2V, _slow_failing_i2v(receiver))
    deadline = time.monotonic() + 10
    while fal.http.get(submitted["status_url"]).json()["status"] != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert fal.http.put(submitted["cancel_url"]).status_code == 202

    # It ends with its own outcome (here: the image download failed), not as cancelled.
    done = fal.wait_completed(submitted)
    assert done["error_type"] == "file_download_error"
    assert fal.http.get(submitted["response_url"]).status_code == 422
    assert fal.http.put(submitted["cancel_url"]).status_code == 400


def test_jwks_publishes_okp_ed25519_keys_without_padding(sim: Sim) -> None:
    [key] = sim.fal.jwks()["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert "=" not in key["x"]
    assert key["kid"]
