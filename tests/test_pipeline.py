"""A job's whole way: intake → dispatch → fal (simulator) → signed webhook → record → callback."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import av
import httpx
import redis as redis_lib
from standardwebhooks import Webhook

from service.jobs import Job, fal_request_fields
from service.settings import Settings
from tests.conftest import (
    CALLBACK_SECRET,
    TENANT_B_KEY,
    CallbackReceiver,
    bearer,
    i2v_body,
    is_terminal,
    wait_for,
)
from tests.support.falproxy import FalProxy, Fault


def marker() -> str:
    return f"case-{uuid.uuid4().hex[:12]}"


def test_image_to_video_job_completes_with_an_h264_mp4_of_the_requested_duration(
    client: httpx.Client,
) -> None:
    answer = client.post("/v1/jobs", json=i2v_body(marker(), duration="4s", resolution="720p"))
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["status"] == "queued"
    assert created["endpoint"] == "fal-ai/veo3.1/fast/image-to-video"
    assert created["links"]["self"] == f"/v1/jobs/{created['id']}"
    assert answer.headers["location"] == created["links"]["self"]

    job = wait_for(client, created["id"], is_terminal)
    assert job["status"] == "completed", job
    assert job["fal_request_id"]
    video = job["result"]["video"]
    assert video["content_type"] == "video/mp4"
    mp4 = httpx.get(video["url"], timeout=10).content
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        assert container.duration is not None
        assert abs(container.duration / 1_000_000 - 4.0) < 0.15
        assert container.streams.audio, "generate_audio defaults to true on Veo 3.1"
        frames = sum(1 for _ in container.decode(video=0))
        assert frames > 0


def test_callback_is_delivered_signed_per_standard_webhooks(
    client: httpx.Client, callback_receiver: CallbackReceiver
) -> None:
    body = {
        **i2v_body(marker()),
        "callback_url": f"{callback_receiver.url}/hooks/video",
        "metadata": {"order": 42},
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    wait_for(client, job_id, lambda job: job.get("callback", {}).get("status") == "delivered")

    [(headers, raw)] = callback_receiver.for_job(job_id)
    event = Webhook(CALLBACK_SECRET).verify(raw, headers)
    assert event["type"] == "job.completed"
    assert event["data"]["id"] == job_id
    assert event["data"]["metadata"] == {"order": 42}
    assert event["data"]["result"]["video"]["url"].endswith(".mp4")
    assert headers["webhook-id"] == f"msg_{job_id}_completed"


def test_callback_is_retried_with_the_same_id_until_the_receiver_accepts(
    client: httpx.Client, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.statuses.extend([404, 503])
    body = {**i2v_body(marker()), "callback_url": f"{callback_receiver.url}/hooks/retry"}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    job = wait_for(client, job_id, lambda job: job.get("callback", {}).get("status") == "delivered")

    deliveries = callback_receiver.for_job(job_id)
    assert len(deliveries) == 3
    assert {headers["webhook-id"] for headers, _ in deliveries} == {f"msg_{job_id}_completed"}
    assert len({raw for _, raw in deliveries}) == 1, "every try sends the same body"
    assert job["callback"]["attempts"] == 3


def test_fal_422_at_submit_fails_the_job_without_a_retry(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    case = marker()
    detail = [
        {
            "loc": ["body", "prompt"],
            "msg": "prompt is not allowed",
            "type": "content_policy_violation",
        }
    ]
    fal_proxy.script(
        case, Fault("status", 422, {"detail": detail}), Fault("status", 422, {"detail": detail})
    )
    job_id = client.post("/v1/jobs", json=i2v_body(case)).json()["id"]

    job = wait_for(client, job_id, is_terminal)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "fal_rejected"
    assert job["error"]["fal_detail"] == detail
    assert job["error"]["errors"] == [
        {
            "path": ["input", "prompt"],
            "message": "prompt is not allowed",
            "type": "content_policy_violation",
        }
    ]
    assert len(fal_proxy.submits_containing(case)) == 1


def test_fal_503_is_retried_and_the_job_then_completes(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    case = marker()
    fal_proxy.script(case, Fault("status", 503, {"detail": "runner_scheduling_failure"}))
    job_id = client.post("/v1/jobs", json=i2v_body(case)).json()["id"]

    job = wait_for(client, job_id, is_terminal)
    assert job["status"] == "completed", job
    assert [record.answered for record in fal_proxy.submits_containing(case)] == [503, 200]


def test_a_submit_that_times_out_is_not_sent_again_when_fal_did_accept_it(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    # fal got the request but its answer came after our 1 s timeout: the outcome is unknown,
    # so vidhook waits for the webhook instead of paying for a second video.
    case = marker()
    fal_proxy.script(case, Fault("late", delay_s=2.0))
    job_id = client.post("/v1/jobs", json=i2v_body(case)).json()["id"]

    job = wait_for(client, job_id, is_terminal)
    assert job["status"] == "completed", job
    assert len(fal_proxy.submits_containing(case)) == 1


def test_input_fal_refuses_after_accepting_fails_the_job_with_fals_detail(
    client: httpx.Client,
) -> None:
    # The URL is well-formed, so intake accepts it; fal cannot download it and fails late.
    body = i2v_body(marker(), image_url="http://127.0.0.1:9/missing.jpg")
    job_id = client.post("/v1/jobs", json=body).json()["id"]

    job = wait_for(client, job_id, is_terminal)
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "fal_request_failed"
    assert any(error["path"] == ["input", "image_url"] for error in job["error"]["errors"]), job[
        "error"
    ]


def test_a_tenant_cannot_read_another_tenants_job(client: httpx.Client, system) -> None:  # type: ignore[no-untyped-def]
    job_id = client.post("/v1/jobs", json=i2v_body(marker())).json()["id"]
    other = httpx.get(f"{system.url}/v1/jobs/{job_id}", headers=bearer(TENANT_B_KEY))
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_requests_without_a_known_api_key_are_refused(system) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, bearer("not-a-key-at-all-000000"), {"Authorization": "Basic abc"}):
        answer = httpx.post(f"{system.url}/v1/jobs", json=i2v_body(marker()), headers=headers)
        assert answer.status_code == 401
        assert answer.json()["status"] == 401


def test_a_request_without_prompt_or_image_is_refused_before_fal_sees_it(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    case = marker()
    body = i2v_body(case)
    del body["input"]["image_url"]
    body["input"]["prompt"] = ""
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    paths = [error["path"] for error in answer.json()["errors"]]
    assert ["input", "image_url"] in paths and ["input", "prompt"] in paths
    assert fal_proxy.submits_containing(case) == []


def test_malformed_json_is_a_400_problem(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["type"].endswith("malformed-body")


def test_an_idempotency_key_returns_the_same_job_and_refuses_a_different_body(
    client: httpx.Client, fal_proxy: FalProxy
) -> None:
    case = marker()
    key = {"Idempotency-Key": case}
    first = client.post("/v1/jobs", json=i2v_body(case), headers=key)
    again = client.post("/v1/jobs", json=i2v_body(case), headers=key)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    different = client.post("/v1/jobs", json=i2v_body(case, duration="6s"), headers=key)
    assert different.status_code == 409
    wait_for(client, first.json()["id"], is_terminal)
    assert len(fal_proxy.submits_containing(case)) == 1


def test_a_queued_job_resource_has_utc_timestamps_and_nothing_yet_from_fal(
    client: httpx.Client,
) -> None:
    before = datetime.now(UTC)
    created = client.post("/v1/jobs", json=i2v_body(marker())).json()
    created_at = datetime.fromisoformat(created["created_at"].replace("Z", "+00:00"))
    assert created["created_at"].endswith("Z")
    assert abs((created_at - before).total_seconds()) < 5
    assert created["updated_at"] == created["created_at"]
    assert created["submitted_at"] is created["completed_at"] is None
    assert created["fal_request_id"] is created["result"] is created["error"] is None
    assert created["submissions"] == {"attempts": 0, "resubmits": 0}


def test_a_finished_job_keeps_neither_empty_fields_nor_what_only_an_active_job_needs(
    client: httpx.Client, settings: Settings, callback_receiver: CallbackReceiver
) -> None:
    body = {**i2v_body(f"slim-{uuid.uuid4().hex}"), "callback_url": callback_receiver.url}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    job_resource = wait_for(client, job_id, is_terminal)
    assert job_resource["status"] == "completed"
    assert job_resource["callback"]["events"] == ["job.completed", "job.failed", "job.cancelled"]
    redis = redis_lib.Redis.from_url(settings.redis_url)
    try:
        fields = redis.hgetall(f"{settings.redis_key_prefix}job:{job_id}")
    finally:
        redis.close()
    assert [name for name, value in fields.items() if value == b""] == []
    for active_only in (
        b"input_sha256",
        b"spend_keys",
        b"spend_micro_usd",
        b"submit_pending_since_ms",
        b"parked",
        b"admissions",
    ):
        assert active_only not in fields
    # The default event selection is what an absent field means.
    assert b"callback_events" not in fields
    # fal's status and cancel URLs are its response URL's: derived, not stored.
    assert b"fal_status_url" not in fields and b"fal_cancel_url" not in fields
    job = Job.from_hash(fields)
    assert job.fal_response_url and job.fal_status_url == f"{job.fal_response_url}/status"
    assert job.fal_cancel_url == f"{job.fal_response_url}/cancel"


def test_fal_request_urls_of_another_form_are_kept_as_fal_gave_them() -> None:
    base = "https://queue.fal.run/fal-ai/veo3.1/requests/r1"
    assert fal_request_fields(f"{base}/status", base, f"{base}/cancel") == {
        "fal_response_url": base,
        "fal_status_url": "",
        "fal_cancel_url": "",
    }
    odd = fal_request_fields("https://elsewhere/s", base, "https://elsewhere/c")
    assert odd["fal_status_url"] == "https://elsewhere/s"
    assert odd["fal_cancel_url"] == "https://elsewhere/c"
    job = Job.from_hash(
        {
            b"id": b"job_1",
            b"tenant": b"t",
            b"endpoint": b"fal-ai/veo3.1/image-to-video",
            b"status": b"submitted",
            b"created_at_ms": b"1",
            **{name.encode(): value.encode() for name, value in odd.items()},
        }
    )
    assert (job.fal_status_url, job.fal_cancel_url) == (
        "https://elsewhere/s",
        "https://elsewhere/c",
    )
