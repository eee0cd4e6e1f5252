"""/healthz says the process lives; /readyz says it can work (Redis, fal's keys)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.dev.localredis import free_port
from service.settings import Settings
from tests.support.servers import ServerThread


def test_ready_when_redis_answers_and_fal_keys_load(system: ServerThread) -> None:
    answer = httpx.get(f"{system.url}/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {"redis": "ok", "dispatch": "running", "fal_keys": "ok"}


@pytest.fixture
def api_without_redis(settings: Settings) -> Iterator[str]:
    values: dict[str, Any] = dict(settings)
    values.update(redis_url=f"redis://127.0.0.1:{free_port()}/0", port=0)
    with ServerThread(create_app(Settings(**values))) as server:
        yield server.url


def test_without_redis_the_process_is_alive_but_not_ready(api_without_redis: str) -> None:
    assert httpx.get(f"{api_without_redis}/healthz").status_code == 200
    answer = httpx.get(f"{api_without_redis}/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["redis"] == "down"


def test_answers_carry_security_headers(system: ServerThread) -> None:
    for path in ("/docs", "/healthz"):
        headers = httpx.get(f"{system.url}{path}").headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]


def _probe(*args: str, **env: str) -> int:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "probe", *args],
        env={**os.environ, **env}, capture_output=True, timeout=20,
    ).returncode  # fmt: skip


def test_the_image_probe_checks_the_role_it_is_given(system: ServerThread) -> None:
    assert _probe("api", PORT=str(system.port)) == 0
    assert _probe("api", PORT=str(free_port())) == 1
    assert _probe("worker", WORKER_METRICS_PORT="") == 0  # no metrics port: nothing to ask
