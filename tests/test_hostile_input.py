"""Hostile bodies are refused as 4xx problems with a path, and no job exists for any of them.

Each case once answered 500, several after the job was stored and sent to fal (issue 8, 11).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from service.dev.localredis import LocalRedis
from service.settings import Settings
from tests.conftest import i2v_body
from tests.support.falproxy import FalProxy


@pytest.fixture
def tenant_jobs(redis_server: LocalRedis, settings: Settings) -> Iterator[Redis]:
    with Redis.from_url(redis_server.url) as redis:
        yield redis


def job_count(redis: Redis, settings: Settings) -> int:
    return int(redis.zcard(f"{settings.redis_key_prefix}jobs:tenant-a"))


def nested(depth: int, leaf: str = "[]") -> str:
    return "[" * depth + leaf + "]" * depth


def body_with(marker: str, *, metadata: str | None = None, seed: str | None = None) -> bytes:
    """A valid request as raw JSON text, with raw JSON spliced in for metadata or the seed."""
    text = json.dumps(i2v_body(marker))
    if seed is not None:
        text = text.replace('"duration": "4s"', f'"duration": "4s", "seed": {seed}')
    if metadata is not None:
        text = text[:-1] + f', "metadata": {metadata}}}'
    return text.encode()


HOSTILE: dict[str, tuple[str, str]] = {
    # name: (which part, raw JSON spliced in)
    "body_nested_10000_deep": ("metadata", '{"a": ' + nested(10_000) + "}"),
    "metadata_nested_970_deep": ("metadata", '{"a": ' + nested(970) + "}"),
    "metadata_nested_100_deep": ("metadata", '{"a": ' + nested(100) + "}"),
    "metadata_integer_of_5000_digits": ("metadata", '{"n": ' + "9" * 5000 + "}"),
    "seed_of_5000_digits": ("seed", "9" * 5000),
    "metadata_value_lone_surrogate": ("metadata", '{"k": "\\ud800"}'),
    "metadata_key_lone_surrogate": ("metadata", '{"\\udc00": 1}'),
    "metadata_nan": ("metadata", '{"x": NaN}'),
    "metadata_overflowing_float": ("metadata", '{"x": 1e999}'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_is_a_4xx_with_a_path_and_creates_no_job(
    client: httpx.Client,
    fal_proxy: FalProxy,
    tenant_jobs: Redis,
    settings: Settings,
    case: str,
) -> None:
    part, raw = HOSTILE[case]
    marker = f"hostile-{uuid.uuid4().hex[:10]}"
    body = body_with(marker, **{part: raw})
    before = job_count(tenant_jobs, settings)
    answer = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["errors"] and all("path" in error for error in problem["errors"])
    # Nested near Python's recursion limit, the parser gives up before it knows the path.
    if problem["errors"][0]["path"] or not case.endswith("0_deep"):
        assert problem["errors"][0]["path"][0] == ("input" if part == "seed" else "metadata")
    assert job_count(tenant_jobs, settings) == before
    assert fal_proxy.submits_containing(marker) == []


@pytest.mark.parametrize("where", ["value", "key"])
def test_invalid_utf8_bytes_in_the_body_are_a_400_and_create_no_job(
    client: httpx.Client, tenant_jobs: Redis, settings: Settings, where: str
) -> None:
    # ED B0 80 is a UTF-8-encoded surrogate: not UTF-8, yet json.loads(bytes) lets it through.
    raw = b'{"k": "\xed\xb0\x80"}' if where == "value" else b'{"\xed\xb0\x80": 1}'
    body = body_with(f"bytes-{uuid.uuid4().hex[:10]}")[:-1] + b', "metadata": ' + raw + b"}"
    before = job_count(tenant_jobs, settings)
    answer = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text[:500]
    assert answer.json()["errors"][0]["type"] == "invalid_utf8"
    assert job_count(tenant_jobs, settings) == before


def test_metadata_as_deep_as_allowed_is_stored_and_read_back(client: httpx.Client) -> None:
    metadata: Any = {"ok": True}
    for _ in range(30):
        metadata = {"n": metadata}
    body = {**i2v_body(f"deep-ok-{uuid.uuid4().hex[:8]}"), "metadata": metadata}
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text[:500]
    assert client.get(f"/v1/jobs/{answer.json()['id']}").json()["metadata"] == metadata


def test_an_empty_idempotency_key_is_refused(
    client: httpx.Client, tenant_jobs: Redis, settings: Settings
) -> None:
    before = job_count(tenant_jobs, settings)
    answer = client.post(
        "/v1/jobs", json=i2v_body(f"idem-{uuid.uuid4().hex[:8]}"), headers={"Idempotency-Key": ""}
    )
    assert answer.status_code == 422, answer.text[:500]
    assert answer.json()["errors"][0]["path"] == ["headers", "Idempotency-Key"]
    assert job_count(tenant_jobs, settings) == before
