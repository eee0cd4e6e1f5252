"""The local default: no bucket configured, files in a folder served by the API itself."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import redis as redis_lib

from service.settings import Settings
from tests.conftest import SAMPLE_IMAGE, i2v_body, is_terminal, wait_for
from tests.media.conftest import wait_until
from tests.support.falproxy import FalProxy


def _mirrored(job: dict[str, object]) -> bool:
    mirror = job.get("mirror")
    return isinstance(mirror, dict) and mirror.get("status") != "pending"


def test_outputs_are_mirrored_to_the_local_folder_and_served_at_tokenised_urls(
    client: httpx.Client, settings: Settings
) -> None:
    job_id = client.post("/v1/jobs", json=i2v_body(f"local-{uuid.uuid4().hex}")).json()["id"]
    job = wait_for(client, job_id, _mirrored)
    assert job["mirror"]["status"] == "mirrored", job
    [asset] = job["assets"]
    fal_bytes = httpx.get(job["result"]["video"]["url"]).content
    assert (settings.media_local_dir / asset["key"]).read_bytes() == fal_bytes
    served = httpx.get(asset["url"])
    assert served.status_code == 200 and served.content == fal_bytes
    assert served.headers["content-type"] == "video/mp4"

    # Without the right token, or past its expiry, the file does not exist.
    query = parse_qs(urlsplit(asset["url"]).query)
    path = urlsplit(asset["url"]).path
    for params in (
        {"expires": query["expires"][0], "token": "x" + query["token"][0][1:]},
        {"expires": str(int(query["expires"][0]) + 1), "token": query["token"][0]},
        {"expires": query["expires"][0]},
    ):
        answer = httpx.get(f"{client.base_url}{path}", params=params)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"


def test_an_expired_local_url_is_refused(settings: Settings, system) -> None:  # type: ignore[no-untyped-def]
    from service.media import LocalMediaStore

    store = LocalMediaStore(
        settings.media_local_dir, base_url=system.url, tokens=settings.media_tokens
    )
    key = "uploads/file_expired.png"
    (settings.media_local_dir / "uploads").mkdir(parents=True, exist_ok=True)
    (settings.media_local_dir / key).write_bytes(b"\x89PNG\r\n\x1a\n")
    expires = int(time.time()) - 1
    token = settings.media_tokens.token(f"{key}\n{expires}")
    assert store.open_path(key, str(expires), token) is None
    answer = httpx.get(f"{system.url}/v1/media/{key}", params={"expires": expires, "token": token})
    assert answer.status_code == 404


def test_a_local_upload_is_a_job_input_fal_can_fetch(client: httpx.Client) -> None:
    image = SAMPLE_IMAGE.read_bytes()
    upload = client.post("/v1/files", files={"file": ("sample.jpg", image, "image/jpeg")})
    assert upload.status_code == 201, upload.text
    url = upload.json()["url"]
    assert url.startswith(f"{client.base_url}/v1/media/uploads/file_")
    body = i2v_body(f"upload-{uuid.uuid4().hex}", image_url=url)
    job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"], _mirrored)
    assert job["status"] == "completed", job


def test_a_large_data_uri_reaches_fal_as_a_url_of_the_same_bytes(
    client: httpx.Client, settings: Settings, fal_proxy: FalProxy
) -> None:
    # A real JPEG with trailing padding (decoders ignore bytes after the end marker), just
    # over the size from which data URIs are stored.
    image = SAMPLE_IMAGE.read_bytes()
    image += b"\0" * (settings.media_data_uri_min_bytes - len(image) + 1)
    case = f"big-uri-{uuid.uuid4().hex}"
    body = i2v_body(case, image_url="data:image/jpeg;base64," + base64.b64encode(image).decode())
    job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"], is_terminal)
    assert job["status"] == "completed", job

    [submit] = fal_proxy.submits_containing(case)
    sent_url = json.loads(submit.body)["image_url"]
    assert sent_url.startswith(f"{client.base_url}/v1/media/uploads/file_"), sent_url[:80]
    assert len(submit.body) < 2000, "fal got a URL, not megabytes of base64"
    assert httpx.get(sent_url).content == image

    small_case = f"small-uri-{uuid.uuid4().hex}"
    client.post("/v1/jobs", json=i2v_body(small_case))
    [small_submit] = wait_until(lambda: fal_proxy.submits_containing(small_case))
    assert json.loads(small_submit.body)["image_url"].startswith("data:image/jpeg;base64,")


def test_a_finished_jobs_input_is_kept_in_the_media_store_and_not_in_redis(
    client: httpx.Client, settings: Settings
) -> None:
    body = i2v_body(f"kept-{uuid.uuid4().hex[:8]}")
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    wait_for(client, job_id, is_terminal)
    key = f"jobs/{job_id}/input.json"
    redis = redis_lib.Redis.from_url(settings.redis_url)
    try:
        # The record keeps only where the input went: a megabyte of data URIs is not in Redis.
        wait_until(lambda: redis.hget(f"{settings.redis_key_prefix}job:{job_id}", "input_key"))
        stored = redis.hmget(f"{settings.redis_key_prefix}job:{job_id}", ["input", "input_key"])
    finally:
        redis.close()
    assert stored == [None, key.encode()] or stored == [b"", key.encode()]
    # Byte for byte the JSON fal received, and read back as the job's input.
    assert json.loads((settings.media_local_dir / key).read_bytes()) == body["input"]
    answer = client.get(f"/v1/jobs/{job_id}/input").json()
    assert answer["kept"] == "media" and answer["input"] == body["input"]


def test_put_many_stores_each_object_and_reports_a_failed_one_without_raising(
    tmp_path: Path, settings: Settings
) -> None:
    import asyncio

    from service.media import LocalMediaStore, MediaError, StoredObject

    store = LocalMediaStore(tmp_path, base_url="http://127.0.0.1:1", tokens=settings.media_tokens)
    # A file where one object's folder would be: that write fails as a full disk's would.
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "job_blocked").write_bytes(b"")
    objects = {f"jobs/job_{n}/input.json": f'{{"n": {n}}}'.encode() for n in range(3)}
    objects["jobs/job_blocked/input.json"] = b"{}"

    outcomes = asyncio.run(store.put_many(objects, "application/json"))

    assert list(outcomes) == list(objects)
    assert isinstance(outcomes["jobs/job_blocked/input.json"], MediaError)
    for n in range(3):
        key = f"jobs/job_{n}/input.json"
        stored = outcomes[key]
        assert isinstance(stored, StoredObject) and stored.size_bytes == len(objects[key])
        assert (tmp_path / key).read_bytes() == objects[key]
    # No partial files are left beside the objects, failed or not.
    assert not [path for path in tmp_path.rglob(".*.part")]
