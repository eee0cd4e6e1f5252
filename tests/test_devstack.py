"""`vidhook dev` (what `make run` runs): the whole system from one command, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.dev.localredis import free_port
from tests.conftest import i2v_body


def test_vidhook_dev_serves_a_job_end_to_end_and_stops_every_child_on_sigint(
    tmp_path: Path,
) -> None:
    api_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "FAL_KEY", "API_KEYS", "PUBLIC_BASE_URL")
    }
    env.update(
        PORT=str(api_port),
        SIMULATOR_PORT=str(free_port()),
        DEV_REDIS_PORT=str(free_port()),
        SIMULATOR_DELAY_S="0",
        LOG_LEVEL="warning",
    )
    env.pop("VIDHOOK_STATE_DIR", None)  # the default, relative `.vidhook`, as `make run` uses
    dev = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "dev"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        api = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("vidhook dev did not come up")
        key = (tmp_path / ".vidhook" / "dev-api-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        job = httpx.post(f"{api}/v1/jobs", json=i2v_body("dev"), headers=headers).json()
        deadline = time.monotonic() + 60
        while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            job = httpx.get(f"{api}/v1/jobs/{job['id']}", headers=headers).json()
        assert job["status"] == "completed", job
        fal_video = httpx.get(job["result"]["video"]["url"])
        assert fal_video.headers["content-type"] == "video/mp4"
        # With nothing configured, outputs are mirrored to a local folder the API serves.
        while job.get("mirror", {}).get("status") == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            job = httpx.get(f"{api}/v1/jobs/{job['id']}", headers=headers).json()
        assert job["mirror"]["status"] == "mirrored", job
        [asset] = job["assets"]
        assert asset["url"].startswith(f"{api}/v1/media/")
        assert httpx.get(asset["url"]).content == fal_video.content
        assert (tmp_path / ".vidhook" / "media" / asset["key"]).read_bytes() == fal_video.content
        children = psutil.Process(dev.pid).children(recursive=True)
        assert len(children) >= 4, "redis, simulator, api and worker"
    finally:
        dev.send_signal(signal.SIGINT)
        returncode = dev.wait(timeout=20)
        stderr = dev.stderr.read().decode() if dev.stderr else ""
        if dev.stderr:
            dev.stderr.close()
    assert returncode == 0, stderr[-3000:]
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"children left running: {alive}"
