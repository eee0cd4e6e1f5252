"""The fal webhook receiver: nothing unverified changes a job; the first terminal state wins."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis import Redis

from service.app import create_app
from service.dev.localredis import LocalRedis, free_port
from service.settings import Settings
from tests.conftest import SIMULATOR_SIGNING_SEED, i2v_body, is_terminal, wait_for
from tests.support.falproxy import FalProxy, Fault
from tests.support.servers import ServerThread

SIM_KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SIMULATOR_SIGNING_SEED))
USER_ID = "test-user"


def signed_headers(
    body: bytes,
    request_id: str,
    *,
    key: Ed25519PrivateKey = SIM_KEY,
    timestamp_s: int | None = None,
) -> dict[str, str]:
    timestamp = str(int(time.time()) if timestamp_s is None else timestamp_s)
    message = "\n".join([request_id, USER_ID, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    return {
        "content-type": "application/json",
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": USER_ID,
        "x-fal-webhook-timestamp": timestamp,
        "x-fal-webhook-signature": key.sign(message).hex(),
    }


def submitted_job(client: httpx.Client, fal_proxy: FalProxy, fault: str) -> dict[str, Any]:
    """A job fal answered with `fault` ('swallow' or 'mute'), plus the webhook URL it was given."""
    case = f"{fault}-{uuid.uuid4().hex[:10]}"
    fal_proxy.script(case, Fault(fault))
    job = client.post("/v1/jobs", json=i2v_body(case)).json()
    job = wait_for(client, job["id"], lambda j: j["status"] == "submitted")
    [submit] = fal_proxy.submits_containing(case)
    assert submit.webhook_url is not None
    return {**job, "webhook_url": submit.webhook_url}


@pytest.fixture
def silent_job(client: httpx.Client, fal_proxy: FalProxy) -> dict[str, Any]:
    """A job fal "accepted" (a fake receipt) and never calls back: only test webhooks reach it."""
    return submitted_job(client, fal_proxy, "swallow")


def ok_payload(request_id: str, url: str = "https://v3.fal.media/files/out.mp4") -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "OK",
            "payload": {"video": {"url": url}},
        }
    ).encode()


def test_a_verified_ok_webhook_completes_the_job(
    client: httpx.Client, silent_job: dict[str, Any]
) -> None:
    body = ok_payload(silent_job["fal_request_id"])
    answer = httpx.post(
        silent_job["webhook_url"],
        content=body,
        headers=signed_headers(body, silent_job["fal_request_id"]),
    )
    assert answer.status_code == 200
    job = client.get(f"/v1/jobs/{silent_job['id']}").json()
    assert job["status"] == "completed"
    assert job["result"] == {"video": {"url": "https://v3.fal.media/files/out.mp4"}}


@pytest.mark.parametrize(
    "forgery",
    [
        "body_changed",
        "stale_timestamp",
        "future_timestamp",
        "unknown_key",
        "missing_signature",
        "garbage_signature",
    ],
)
def test_an_unverifiable_webhook_is_refused_and_changes_nothing(
    client: httpx.Client, silent_job: dict[str, Any], forgery: str
) -> None:
    request_id = silent_job["fal_request_id"]
    body = ok_payload(request_id)
    headers = signed_headers(body, request_id)
    if forgery == "body_changed":
        body = ok_payload(request_id, url="https://evil.example/x.mp4")
    elif forgery == "stale_timestamp":
        headers = signed_headers(body, request_id, timestamp_s=int(time.time()) - 310)
    elif forgery == "future_timestamp":
        headers = signed_headers(body, request_id, timestamp_s=int(time.time()) + 310)
    elif forgery == "unknown_key":
        headers = signed_headers(body, request_id, key=Ed25519PrivateKey.generate())
    elif forgery == "missing_signature":
        del headers["x-fal-webhook-signature"]
    elif forgery == "garbage_signature":
        headers["x-fal-webhook-signature"] = "zz" * 64
    answer = httpx.post(silent_job["webhook_url"], content=body, headers=headers)
    assert answer.status_code == 403
    assert client.get(f"/v1/jobs/{silent_job['id']}").json()["status"] == "submitted"


def test_a_refused_webhook_is_not_answered_as_an_api_key_problem(
    silent_job: dict[str, Any],
) -> None:
    body = ok_payload(silent_job["fal_request_id"])
    answer = httpx.post(silent_job["webhook_url"], content=body, headers={"x-other": "1"})
    assert answer.status_code == 403
    assert "www-authenticate" not in answer.headers
    assert answer.headers["content-type"] == "application/problem+json"
    assert "API key" not in answer.json()["title"]


def test_a_webhook_fal_signed_for_another_request_is_refused_and_recorded(
    client: httpx.Client, silent_job: dict[str, Any], redis_server: LocalRedis, settings: Settings
) -> None:
    # Anyone with a fal account gets deliveries fal really signed, for their own requests.
    # With one job's webhook URL, such a delivery must not complete that job.
    other_request = f"req-{uuid.uuid4()}"
    body = ok_payload(other_request, url="https://attacker.example/x.mp4")
    answer = httpx.post(
        silent_job["webhook_url"], content=body, headers=signed_headers(body, other_request)
    )
    assert answer.status_code == 403, answer.text
    # Header and body naming different requests: both signed, but not what fal sends.
    body = ok_payload(other_request)
    answer = httpx.post(
        silent_job["webhook_url"],
        content=body,
        headers=signed_headers(body, silent_job["fal_request_id"]),
    )
    assert answer.status_code == 403, answer.text
    assert client.get(f"/v1/jobs/{silent_job['id']}").json()["status"] == "submitted"
    with Redis.from_url(redis_server.url) as redis:
        events = redis.lrange(f"{settings.redis_key_prefix}job:{silent_job['id']}:events", 0, -1)
    refused = [json.loads(e) for e in events]
    assert [e["event"] for e in refused] == ["webhook_refused", "webhook_refused"]
    assert refused[0]["fal_request_id"] == other_request


def test_a_webhook_to_a_forged_url_is_refused_before_signature_checks(
    client: httpx.Client, silent_job: dict[str, Any]
) -> None:
    request_id = silent_job["fal_request_id"]
    body = ok_payload(request_id)
    forged = silent_job["webhook_url"].split("?")[0] + "?token=guessed"
    assert (
        httpx.post(forged, content=body, headers=signed_headers(body, request_id)).status_code
        == 404
    )
    assert client.get(f"/v1/jobs/{silent_job['id']}").json()["status"] == "submitted"


def test_a_token_opens_only_its_own_jobs_url(
    client: httpx.Client, silent_job: dict[str, Any], settings: Settings
) -> None:
    request_id = silent_job["fal_request_id"]
    body = ok_payload(request_id)
    token = silent_job["webhook_url"].split("token=")[1]
    other_job = settings.fal_webhook_url("job_someone_else").split("?")[0]
    answer = httpx.post(
        f"{other_job}?token={token}", content=body, headers=signed_headers(body, request_id)
    )
    assert answer.status_code == 404
    gone = settings.fal_webhook_url("job_long_expired")
    assert (
        httpx.post(gone, content=body, headers=signed_headers(body, request_id)).status_code == 404
    )
    assert client.get(f"/v1/jobs/{silent_job['id']}").json()["status"] == "submitted"


def test_a_job_whose_webhook_is_lost_is_completed_by_asking_fal(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    # The request runs on the simulator, but fal never calls back: RECONCILE_AFTER_S (8 s in
    # the tests) after the submit, the worker asks fal's status and result URLs itself.
    job = submitted_job(client, fal_proxy, "mute")
    done = wait_for(client, job["id"], is_terminal, timeout_s=45)
    assert done["status"] == "completed", done
    assert done["result"]["video"]["url"].endswith(".mp4")
    assert done["submissions"] == {"attempts": 1, "resubmits": 0}


def test_a_request_fal_does_not_know_fails_the_job_instead_of_waiting_forever(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    # A fake acceptance: fal's status URL answers 404 NOT_FOUND for this request id.
    job = submitted_job(client, fal_proxy, "swallow")
    done = wait_for(client, job["id"], is_terminal, timeout_s=45)
    assert done["status"] == "failed"
    assert done["error"]["type"] == "fal_request_unknown"


def test_duplicate_and_conflicting_webhooks_after_the_first_are_harmless(
    client: httpx.Client, silent_job: dict[str, Any], redis_server: LocalRedis, settings: Settings
) -> None:
    request_id = silent_job["fal_request_id"]
    error_body = json.dumps(
        {
            "request_id": request_id,
            "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": {
                "detail": [
                    {
                        "loc": ["body", "image_url"],
                        "msg": "File download error",
                        "type": "file_download_error",
                    }
                ]
            },
        }
    ).encode()
    first = httpx.post(
        silent_job["webhook_url"],
        content=error_body,
        headers=signed_headers(error_body, request_id),
    )
    assert first.json() == {"received": True, "applied": True}
    failed = client.get(f"/v1/jobs/{silent_job['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["errors"] == [
        {
            "path": ["input", "image_url"],
            "message": "File download error",
            "type": "file_download_error",
        }
    ]

    again = httpx.post(
        silent_job["webhook_url"],
        content=error_body,
        headers=signed_headers(error_body, request_id),
    )
    late_ok = ok_payload(request_id)
    later = httpx.post(
        silent_job["webhook_url"], content=late_ok, headers=signed_headers(late_ok, request_id)
    )
    assert again.status_code == later.status_code == 200
    assert again.json()["applied"] is later.json()["applied"] is False
    assert client.get(f"/v1/jobs/{silent_job['id']}").json() == failed
    with Redis.from_url(redis_server.url) as redis:
        events = redis.lrange(f"{settings.redis_key_prefix}job:{silent_job['id']}:events", 0, -1)
    assert [json.loads(e)["event"] for e in events] == ["late_outcome", "late_outcome"]


def test_an_ok_webhook_without_payload_is_completed_from_fals_result_url(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    # fal sends `payload: null` + `payload_error` when the output could not be embedded; the
    # result must then be read from the response URL. The request really runs on the simulator
    # (which is never told our webhook URL), so its status and result URLs answer.
    job = submitted_job(client, fal_proxy, "mute")
    url = job["webhook_url"]
    request_id = job["fal_request_id"]
    body = json.dumps(
        {
            "request_id": request_id,
            "status": "OK",
            "payload": None,
            "payload_error": "Response payload is not JSON serializable.",
        }
    ).encode()
    assert (
        httpx.post(url, content=body, headers=signed_headers(body, request_id)).status_code == 200
    )

    done = wait_for(client, job["id"], lambda j: j["status"] in ("completed", "failed"))
    assert done["status"] == "completed", done
    assert done["result"]["video"]["url"].endswith(".mp4")


def test_a_webhook_is_a_503_with_retry_after_while_no_jwks_key_can_verify_it(
    settings: Settings,
) -> None:
    # fal redelivers on a 503; a 4xx would tell it that a genuine delivery is wrong.
    dead_jwks = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    app = create_app(settings.model_copy(update={"fal_jwks_url": dead_jwks, "port": free_port()}))
    with ServerThread(app) as api:
        body = ok_payload("req-any")
        path = settings.fal_webhook_url("job_x").removeprefix(
            str(settings.public_base_url).rstrip("/")
        )
        url = api.url + path
        answer = httpx.post(url, content=body, headers=signed_headers(body, "req-any"))
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) >= 1


def test_with_fal_user_id_set_a_webhook_signed_for_another_user_is_refused(
    client: httpx.Client, silent_job: dict[str, Any], settings: Settings
) -> None:
    request_id = silent_job["fal_request_id"]
    pinned = settings.model_copy(update={"fal_user_id": "our-fal-user", "port": free_port()})
    with ServerThread(create_app(pinned)) as api:
        path = silent_job["webhook_url"].removeprefix(str(settings.public_base_url).rstrip("/"))
        body = ok_payload(request_id)
        answer = httpx.post(api.url + path, content=body, headers=signed_headers(body, request_id))
    assert answer.status_code == 403, answer.text
    assert client.get(f"/v1/jobs/{silent_job['id']}").json()["status"] == "submitted"
