"""/fal/proxy: fal's client proxy protocol. Queue calls take vidhook's durable path; nothing
outside fal's hosts is ever fetched; the official @fal-ai/client completes a job through it."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TENANT_A_KEY, bearer, i2v_body
from tests.support.falproxy import FalProxy
from tests.support.servers import ServerThread

JS_DIR = Path(__file__).resolve().parent.parent / "js"
ENDPOINT = "fal-ai/veo3.1/fast/image-to-video"
QUEUE = "https://queue.fal.run"


def proxied(system: ServerThread, method: str, target: str, **kwargs: Any) -> httpx.Response:
    headers = {**bearer(TENANT_A_KEY), "x-fal-target-url": target, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{system.url}/fal/proxy", headers=headers, timeout=20, **kwargs)


def test_a_queue_submit_through_the_proxy_is_a_vidhook_job(
    system: ServerThread, fal_proxy: FalProxy
) -> None:
    case = f"proxy-{uuid.uuid4().hex[:8]}"
    answer = proxied(system, "POST", f"{QUEUE}/{ENDPOINT}", json=i2v_body(case)["input"])
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["status_url"] == f"{QUEUE}/fal-ai/veo3.1/requests/{receipt['request_id']}/status"
    status = proxied(system, "GET", receipt["status_url"] + "?logs=0")
    assert status.status_code in (200, 202) and status.json()["request_id"] == receipt["request_id"]
    job = httpx.get(f"{system.url}/v1/jobs/{receipt['request_id']}", headers=bearer(TENANT_A_KEY))
    assert job.status_code == 200


@pytest.mark.parametrize(
    ("target", "status_code"),
    [
        ("http://queue.fal.run/fal-ai/veo3.1/fast/image-to-video", 412),  # not https
        ("https://127.0.0.1:6379/", 412),
        ("https://example.com/anything", 412),
        ("https://fal.ai.example.com/", 412),
        ("https://user:pw@rest.fal.ai/storage", 412),
        ("https://rest.fal.ai:8443/storage", 412),
        ("https://fal.run/fal-ai/veo3.1/fast/image-to-video", 403),  # a sync run
        ("not a url at all", 412),
    ],
)
def test_the_proxy_never_fetches_a_target_outside_fals_hosts(
    system: ServerThread, target: str, status_code: int
) -> None:
    answer = proxied(system, "POST", target, json={})
    assert answer.status_code == status_code, answer.text
    assert isinstance(answer.json()["detail"], str)


def test_the_proxy_wants_a_target_and_a_vidhook_key(system: ServerThread) -> None:
    missing = httpx.post(f"{system.url}/fal/proxy", headers=bearer(TENANT_A_KEY), json={})
    assert missing.status_code == 400
    anonymous = httpx.post(
        f"{system.url}/fal/proxy", headers={"x-fal-target-url": f"{QUEUE}/{ENDPOINT}"}, json={}
    )
    assert anonymous.status_code == 401


def test_the_official_js_client_completes_a_job_through_the_proxy(
    system: ServerThread, fal_proxy: FalProxy
) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js (node and npm) is not installed: the @fal-ai/client test needs it")
    if not (JS_DIR / "node_modules" / "@fal-ai" / "client").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300)
    case = f"js-{uuid.uuid4().hex[:8]}"
    run = subprocess.run(
        [node, "proxy_subscribe.mjs", f"{system.url}/fal/proxy", TENANT_A_KEY, ENDPOINT],
        cwd=JS_DIR,
        input=json.dumps(i2v_body(case)["input"]),
        capture_output=True,
        text=True,
        timeout=90,
        env={"PATH": str(Path(node).parent), "HOME": str(JS_DIR)},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["requestId"].startswith("job_")
    assert seen["resultRequestId"] == seen["requestId"]
    assert seen["data"]["video"]["url"].endswith(".mp4")
    assert seen["updates"][-1] == "COMPLETED"
    assert seen["invalid"]["name"] == "ValidationError" and seen["invalid"]["status"] == 422
    assert {tuple(e["loc"]) for e in seen["invalid"]["fieldErrors"]} >= {
        ("body", "prompt"),
        ("body", "image_url"),
    }
    assert len(fal_proxy.submits_containing(case)) == 1
    job = httpx.get(f"{system.url}/v1/jobs/{seen['requestId']}", headers=bearer(TENANT_A_KEY))
    assert job.json()["status"] == "completed"
    print(f"@fal-ai/client subscribe via /fal/proxy: {seen['elapsedMs'] / 1000:.2f}s")
