"""Redis under bursts and outages: waiting for a pooled connection, and 503 when it is gone.

Against real Redis servers (issue 8, item 7): the session's one, with the API's pool cut to 2,
and a private one this test stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from service.app import create_app
from service.dev.localredis import LocalRedis
from service.redisconn import unauthenticated_remote, warn_if_unauthenticated
from service.settings import Settings
from tests.conftest import TENANT_A_KEY, bearer, i2v_body
from tests.support.isolation import isolated
from tests.support.servers import ServerThread


@pytest.fixture
def small_pool_api(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(isolated(settings, redis_max_connections=2))) as server:
        yield server


def test_thirty_concurrent_reads_on_a_pool_of_two_all_succeed(
    small_pool_api: ServerThread,
) -> None:
    headers = bearer(TENANT_A_KEY)
    created = httpx.post(f"{small_pool_api.url}/v1/jobs", json=i2v_body("pool"), headers=headers)
    assert created.status_code == 202, created.text
    url = f"{small_pool_api.url}/v1/jobs/{created.json()['id']}"

    async def burst() -> list[int]:
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            answers = await asyncio.gather(*(client.get(url) for _ in range(30)))
        return [answer.status_code for answer in answers]

    assert asyncio.run(burst()) == [200] * 30


def test_a_redis_outage_is_a_503_problem_with_retry_after(
    settings: Settings, tmp_path: Path
) -> None:
    redis = LocalRedis(tmp_path / "redis", appendonly=False)
    redis.start()
    try:
        app = create_app(isolated(settings, redis_url=redis.url, redis_pool_timeout_s=0.5))
        with (
            ServerThread(app) as api,
            httpx.Client(base_url=api.url, headers=bearer(TENANT_A_KEY), timeout=30) as client,
        ):
            job_id = client.post("/v1/jobs", json=i2v_body("outage")).json()["id"]
            redis.stop()
            answers = [
                client.get(f"/v1/jobs/{job_id}"),
                client.post("/v1/jobs", json=i2v_body("x")),
            ]
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                assert int(answer.headers["retry-after"]) >= 1
                assert answer.json()["type"].endswith("/unavailable")
    finally:
        redis.stop()


def test_the_openapi_document_declares_the_503(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/jobs", "post"), ("/v1/jobs/{job_id}", "get")):
        answer = paths[path][method]["responses"]["503"]
        assert "Retry-After" in answer["headers"]
        assert "application/problem+json" in answer["content"]


@pytest.mark.parametrize(
    ("url", "open_to_network"),
    [
        ("redis://redis:6379/0", True),
        ("redis://10.0.0.5:6379/0", True),
        ("rediss://cache.example.com:6380", True),
        ("redis://:secret@redis:6379/0", False),
        ("redis://vidhook:secret@10.0.0.5:6379/0", False),
        ("redis://127.0.0.1:6379/0", False),
        ("redis://localhost:6379/0", False),
        ("redis://[::1]:6379/0", False),
        ("unix:///run/redis.sock", False),
    ],
)
def test_only_a_password_less_non_loopback_redis_url_is_flagged(
    url: str, open_to_network: bool
) -> None:
    assert unauthenticated_remote(url) is open_to_network


def test_start_up_warns_when_a_network_redis_answers_without_a_password(
    redis_server: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # The real server answers a password-less PING; the URL is how the deployment names it.
    async def check(url: str) -> bool:
        async with Redis.from_url(redis_server.url) as redis:
            return await warn_if_unauthenticated(redis, url)

    with caplog.at_level(logging.WARNING, logger="vidhook.redis"):
        assert asyncio.run(check("redis://redis:6379/0")) is True
        assert asyncio.run(check(redis_server.url)) is False
    assert ["without a password" in r.getMessage() for r in caplog.records] == [True]
