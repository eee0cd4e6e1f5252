"""Logs: one JSON object per line from every process; no secret, token or data URI in any.

The whole run's lines are checked at session end (tests/conftest.py); these tests pin the
format in a real `vidhook api` process and prove that the check can fail.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.dev.localredis import free_port
from service.logs import formatter
from service.settings import Settings
from tests.conftest import LOG_LINES, TENANT_A_KEY, sample_image_data_uri
from tests.support.logcapture import LogCapture
from tests.support.servers import ServerThread


def test_a_record_renders_as_one_json_object_with_its_fields() -> None:
    record = logging.LogRecord(
        "vidhook.dispatch", logging.INFO, __file__, 1, "job.submitted", None, None
    )
    record.__dict__.update(job_id="job_1", fal_request_id="req_1", tenant="t", duration_s=0.0123)
    line = formatter().format(record)
    assert "\n" not in line
    assert json.loads(line) == {
        "event": "job.submitted", "level": "info", "logger": "vidhook.dispatch",
        "ts": json.loads(line)["ts"], "job_id": "job_1", "fal_request_id": "req_1",
        "tenant": "t", "duration_s": 0.0123,
    }  # fmt: skip


def test_the_leak_check_finds_keys_tokens_and_data_uris() -> None:
    capture = LogCapture(secrets=[TENANT_A_KEY])
    planted = [
        f"auth with {TENANT_A_KEY}",
        "POST /v1/fal/webhooks/job_1?token=abc",
        "fal_webhook=http%3A%2F%2Fx%2Fv1%3Ftoken%3Dabc",
        f"input {sample_image_data_uri()[:80]}",
        "made vhk_" + "x" * 40,
    ]
    assert len(capture.leaks(planted)) == len(planted)
    assert capture.leaks(['"POST /v1/fal/webhooks/job_1?token=*** HTTP/1.1" 200']) == []


def test_the_run_so_far_has_logged_and_leaked_nothing(system: ServerThread) -> None:
    httpx.get(f"{system.url}/healthz")
    assert any('"logger": "uvicorn.access"' in line for line in LOG_LINES.lines)
    assert LOG_LINES.leaks() == []


def test_vidhook_api_logs_json_lines_masks_tokens_and_sends_no_server_header(
    settings: Settings,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "FAL_KEY": "test-fal-key",
        "FAL_JWKS_URL": str(settings.fal_jwks_url),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "API_KEYS": f"{TENANT_A_KEY}:tenant-a",
        "CALLBACK_SIGNING_SECRET": settings.callback_signing_secret.get_secret_value(),
        "PORT": str(port),
        "ACCESS_LOG": "true",
        "LOG_LEVEL": "info",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "api"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and api.poll() is None, "api did not start"
                time.sleep(0.1)
        assert "server" not in health.headers
        httpx.post(f"http://127.0.0.1:{port}/v1/fal/webhooks/job_1?token=secret-token", json={})
    finally:
        api.terminate()
        _, stderr = api.communicate(timeout=20)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert {line["logger"] for line in lines} >= {"uvicorn.error", "uvicorn.access"}
    access = [line["event"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any("/v1/fal/webhooks/job_1?token=***" in event for event in access), access
    assert "secret-token" not in stderr and TENANT_A_KEY not in stderr


def test_vidhook_api_help_lists_the_settings() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "api", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0
    assert "REDIS_URL (required)" in run.stdout and "CALLBACK_MAX_TRIES" in run.stdout


def test_several_api_processes_answer_metrics_summed_over_all_of_them(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": "multiproc:",
        "ARQ_QUEUE_NAME": "multiproc:queue",
        "FAL_KEY": "test-fal-key",
        "FAL_JWKS_URL": str(settings.fal_jwks_url),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "API_KEYS": f"{TENANT_A_KEY}:tenant-mp",
        "CALLBACK_SIGNING_SECRET": settings.callback_signing_secret.get_secret_value(),
        "PORT": str(port),
        "API_PROCESSES": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "warning",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "api"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    body = {
        "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "input": {"prompt": "two processes", "image_url": "https://images.example/a.jpg"},
    }
    try:
        deadline = time.monotonic() + 60
        pids: set[str] = set()
        while len(pids) < 2:  # both uvicorn children have made their metric files
            assert time.monotonic() < deadline and api.poll() is None, "api did not start"
            time.sleep(0.2)
            files = (tmp_path / "metrics").glob("counter_*.db")
            pids = {f.stem.split("_")[1] for f in files} - {str(api.pid)}
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TENANT_A_KEY}"}) as c:
            while True:
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "api not ready"
                time.sleep(0.2)
            # New connections each time, so both processes take some of the work.
            for _ in range(10):
                assert (
                    httpx.post(f"{base}/v1/jobs", json=body, headers=c.headers).status_code == 202
                )
            scrapes = {
                line
                for _ in range(6)
                for line in httpx.get(f"{base}/metrics").text.splitlines()
                if line.startswith("vidhook_jobs_accepted_total{")
            }
    finally:
        api.terminate()
        api.wait(timeout=30)
    assert scrapes == {
        'vidhook_jobs_accepted_total{endpoint="fal-ai/veo3.1/fast/image-to-video",'
        'tenant="tenant-mp"} 10.0'
    }
