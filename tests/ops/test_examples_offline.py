"""With EXAMPLE_MEDIA_BASE_URL (`vidhook dev` sets it), /v1/endpoints' examples name files the
simulator serves, so each example works on a machine with no internet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import TENANT_A_KEY, bearer
from tests.support.servers import ServerThread


def _urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [url for item in value.values() for url in _urls(item)]
    if isinstance(value, list):
        return [url for item in value for url in _urls(item)]
    return [value] if isinstance(value, str) and value.startswith("http") else []


@pytest.fixture(scope="module")
def offline_api(settings: Settings, simulator: ServerThread) -> Iterator[tuple[str, str]]:
    """An API whose examples point at the simulator, with a queue no worker reads."""
    values: dict[str, Any] = dict(settings)
    samples = f"{simulator.url}/samples"
    values.update(
        example_media_base_url=samples,
        redis_key_prefix="offline:",
        arq_queue_name="offline:queue",
        port=0,
    )
    with ServerThread(create_app(Settings(**values))) as server:
        yield server.url, samples


def test_every_example_names_a_served_sample_and_is_accepted(offline_api: tuple[str, str]) -> None:
    url, samples = offline_api
    with httpx.Client(base_url=url, headers=bearer(TENANT_A_KEY), timeout=10) as http:
        listing = http.get("/v1/endpoints").json()["endpoints"]
        kinds = {"sample.jpg": "image/jpeg", "sample.png": "image/png", "sample.mp4": "video/mp4"}
        for entry in listing:
            files = _urls(entry["example_input"])
            assert files, entry["endpoint"]
            for file_url in files:
                assert file_url.startswith(samples + "/"), file_url
                served = httpx.get(file_url)
                assert served.status_code == 200
                assert served.headers["content-type"] == kinds[file_url.rsplit("/", 1)[1]]
            job = http.post(
                "/v1/jobs", json={"endpoint": entry["endpoint"], "input": entry["example_input"]}
            )
            assert job.status_code == 202, (entry["endpoint"], job.text)
