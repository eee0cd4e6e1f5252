"""Uploads and mirroring against a real S3 API (moto's server over HTTP, the real aioboto3)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx
from standardwebhooks import Webhook

from service.settings import Settings
from tests.catalog.media import JPEG, PNG, TEXT, mp4, padded
from tests.conftest import (
    CALLBACK_SECRET,
    SAMPLE_IMAGE,
    CallbackReceiver,
    wait_for,
)
from tests.media.conftest import SourceServer, finished_by_fal, object_digest, run


def _mirror_settled(job: dict[str, object]) -> bool:
    mirror = job.get("mirror")
    return isinstance(mirror, dict) and mirror.get("status") != "pending"


def test_upload_then_job_then_mirrored_object_has_the_same_bytes_as_fals_output(
    s3_client: httpx.Client, s3_settings: Settings, callback_receiver: CallbackReceiver
) -> None:
    image = SAMPLE_IMAGE.read_bytes()
    upload = s3_client.post("/v1/files", content=image, headers={"content-type": "image/jpeg"})
    assert upload.status_code == 201, upload.text
    file = upload.json()
    assert file["content_type"] == "image/jpeg"
    assert file["bytes"] == len(image)
    assert file["sha256"] == hashlib.sha256(image).hexdigest()
    assert file["id"].startswith("file_") and file["expires_at"].endswith("Z")
    # A pre-signed URL of the bucket, fetchable without credentials (as fal fetches it).
    assert "X-Amz-Signature=" in file["url"]
    assert httpx.get(file["url"]).content == image

    body = {
        "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "input": {
            "prompt": f"An uploaded lighthouse ({uuid.uuid4().hex})",
            "image_url": file["url"],
        },
        "callback_url": f"{callback_receiver.url}/hooks/s3",
    }
    created = s3_client.post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    job = wait_for(s3_client, job_id, lambda j: j.get("callback", {}).get("status") == "delivered")

    assert job["status"] == "completed", job
    assert job["mirror"]["status"] == "mirrored"
    fal_video = job["result"]["video"]
    [asset] = job["assets"]
    fal_bytes = httpx.get(fal_video["url"]).content
    assert asset["kind"] == "video" and asset["source_url"] == fal_video["url"]
    assert asset["key"] == f"jobs/{job_id}/video.mp4"
    assert asset["content_type"] == "video/mp4"
    assert asset["bytes"] == len(fal_bytes)
    assert asset["sha256"] == hashlib.sha256(fal_bytes).hexdigest()
    size, sha256, _ = run(object_digest(s3_settings, asset["key"]))
    assert (size, sha256) == (len(fal_bytes), asset["sha256"])
    assert httpx.get(asset["url"]).content == fal_bytes

    # The callback came after the copy, and only once.
    [(headers, raw)] = callback_receiver.for_job(job_id)
    event = Webhook(CALLBACK_SECRET).verify(raw, headers)
    assert event["data"]["assets"] == job["assets"]
    assert event["data"]["result"] == job["result"], "result stays exactly fal's output"


def test_a_failing_mirror_is_retried_then_recovers(
    s3_client: httpx.Client,
    s3_settings: Settings,
    source_server: SourceServer,
    callback_receiver: CallbackReceiver,
) -> None:
    video = mp4(4.0, mdat_bytes=200_000)
    name = f"flaky-{uuid.uuid4().hex}.mp4"
    url = source_server.add(name, video, fail_with=(503, 502))
    result = {"video": {"url": url, "content_type": "video/mp4", "file_size": len(video)}}
    job_id = run(finished_by_fal(s3_settings, result, callback_url=f"{callback_receiver.url}/f"))

    job = wait_for(s3_client, job_id, lambda j: j.get("callback", {}).get("status") == "delivered")
    assert job["mirror"] == {"status": "mirrored", "attempts": 3}
    assert source_server.hits[name] == 3
    [asset] = job["assets"]
    assert run(object_digest(s3_settings, asset["key"]))[:2] == (
        len(video),
        hashlib.sha256(video).hexdigest(),
    )
    assert len(callback_receiver.for_job(job_id)) == 1


def test_a_mirror_that_keeps_failing_completes_with_fals_url_and_says_so_once(
    s3_client: httpx.Client,
    s3_settings: Settings,
    source_server: SourceServer,
    callback_receiver: CallbackReceiver,
) -> None:
    name = f"broken-{uuid.uuid4().hex}.mp4"
    url = source_server.add(name, b"never served", fail_with=(500,) * 20)
    result = {"video": {"url": url, "content_type": "video/mp4"}}
    job_id = run(finished_by_fal(s3_settings, result, callback_url=f"{callback_receiver.url}/g"))

    job = wait_for(s3_client, job_id, lambda j: j.get("callback", {}).get("status") == "delivered")
    assert job["status"] == "completed"
    assert job["mirror"]["status"] == "failed"
    assert "500" in job["mirror"]["error"]
    assert job["mirror"]["attempts"] == s3_settings.mirror_max_tries
    assert job["assets"] == []
    assert job["result"]["video"]["url"] == url
    time.sleep(0.5)  # a second callback would come from a retry of the mirror; none may
    [(_, raw)] = callback_receiver.for_job(job_id)
    assert json.loads(raw)["data"]["mirror"]["status"] == "failed"


def test_a_stalled_download_is_cut_off_and_the_job_still_announced(
    s3_client: httpx.Client,
    s3_settings: Settings,
    source_server: SourceServer,
    callback_receiver: CallbackReceiver,
) -> None:
    url = f"{source_server.url}/drip/{uuid.uuid4().hex}.mp4"
    job_id = run(
        finished_by_fal(
            s3_settings, {"video": {"url": url}}, callback_url=f"{callback_receiver.url}/d"
        )
    )
    job = wait_for(
        s3_client, job_id, lambda j: j.get("callback", {}).get("status") == "delivered", 30
    )
    assert job["mirror"]["status"] == "failed"
    assert "longer than 2.0 s" in job["mirror"]["error"]
    assert len(callback_receiver.for_job(job_id)) == 1


def test_a_job_result_without_files_is_not_held_back(
    s3_client: httpx.Client, s3_settings: Settings
) -> None:
    job_id = run(finished_by_fal(s3_settings, {"text": "no files here"}))
    job = wait_for(s3_client, job_id, _mirror_settled)
    assert job["mirror"] == {"status": "skipped"} and job["assets"] == []


def test_uploads_that_are_not_an_accepted_image_or_video_are_refused(
    s3_client: httpx.Client,
) -> None:
    cases = [
        (TEXT, "text/plain", 415, "unsupported_media_type"),
        (TEXT, "image/png", 415, "unsupported_media_type"),
        (JPEG, "image/gif", 415, "unsupported_media_type"),
        (padded(PNG, 8 * 1024 * 1024 + 1), "image/png", 413, "file_too_large"),
        (mp4(9.5), "video/mp4", 422, "video_duration_too_long"),
    ]
    for data, declared, status, kind in cases:
        answer = s3_client.post("/v1/files", content=data, headers={"content-type": declared})
        assert answer.status_code == status, (declared, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        [error] = answer.json()["errors"]
        assert error["type"] == kind, error
    empty = s3_client.post("/v1/files", content=b"", headers={"content-type": "image/png"})
    assert empty.status_code == 422


def test_a_multipart_upload_is_stored_like_a_raw_one(s3_client: httpx.Client) -> None:
    answer = s3_client.post("/v1/files", files={"file": ("frame.png", PNG, "image/png")})
    assert answer.status_code == 201, answer.text
    assert answer.json()["content_type"] == "image/png"
    assert httpx.get(answer.json()["url"]).content == PNG


def test_uploads_need_an_api_key(s3_client: httpx.Client) -> None:
    answer = httpx.post(f"{s3_client.base_url}/v1/files", content=JPEG)
    assert answer.status_code == 401


def test_running_the_mirror_again_changes_nothing_and_tells_no_one_twice(
    s3_client: httpx.Client,
    s3_settings: Settings,
    source_server: SourceServer,
    callback_receiver: CallbackReceiver,
) -> None:
    video = mp4(2.0)
    url = source_server.add(f"again-{uuid.uuid4().hex}.mp4", video)
    job_id = run(
        finished_by_fal(
            s3_settings, {"video": {"url": url}}, callback_url=f"{callback_receiver.url}/a"
        )
    )
    first = wait_for(
        s3_client, job_id, lambda j: j.get("callback", {}).get("status") == "delivered"
    )

    async def mirror_again() -> str:
        # What a worker that crashed after recording, then restarted, would run.
        from redis.asyncio import Redis

        from workers.context import on_shutdown, on_startup
        from workers.mirror import mirror_job

        ctx: dict[str, Any] = {
            "settings": s3_settings,
            "redis": Redis.from_url(s3_settings.redis_url),
        }
        await on_startup(ctx)
        try:
            return await mirror_job({**ctx, "job_try": 2}, job_id)
        finally:
            await on_shutdown(ctx)
            await ctx["redis"].aclose()

    assert run(mirror_again()) == "already mirrored"
    time.sleep(0.5)
    again = s3_client.get(f"/v1/jobs/{job_id}").json()
    assert again["assets"] == first["assets"] and again["mirror"] == first["mirror"]
    assert len(callback_receiver.for_job(job_id)) == 1


def test_put_many_stores_each_object_in_the_bucket_and_reports_failures_without_raising(
    s3_settings: Settings,
) -> None:
    from service.media import MediaError, StoredObject, open_media_store

    objects = {f"jobs/job_many{n}/input.json": f'{{"n": {n}}}'.encode() for n in range(20)}

    async def put_all(settings: Settings) -> dict[str, StoredObject | MediaError]:
        async with open_media_store(settings) as store:
            return await store.put_many(objects, "application/json")

    outcomes = run(put_all(s3_settings))
    assert list(outcomes) == list(objects)
    for key, data in objects.items():
        stored = outcomes[key]
        assert isinstance(stored, StoredObject), stored
        assert run(object_digest(s3_settings, key))[:2] == (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )

    missing_bucket = s3_settings.model_copy(update={"media_s3_bucket": "no-such-bucket"})
    failed = run(put_all(missing_bucket))
    assert list(failed) == list(objects)
    assert all(isinstance(outcome, MediaError) for outcome in failed.values())
