"""Where the mirror may download from: fal's URLs, never the private network (outside dev)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from service.settings import Settings
from workers.mirror import MirrorFailed, _open_source


class _Context:
    """The two things _open_source reads from a worker's context."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/out.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/x.mp4",
        "http://localhost/x.mp4",
        "file:///etc/passwd",
    ],
)
def test_the_mirror_refuses_private_sources_outside_development(
    settings: Settings, url: str
) -> None:
    values: dict[str, Any] = dict(settings)
    values["media_allow_private_sources"] = False
    strict = Settings(**values)

    async def attempt() -> MirrorFailed:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            with pytest.raises(MirrorFailed) as caught:
                await _open_source(_Context(strict, http), url)  # type: ignore[arg-type]
            return caught.value

    failure = asyncio.run(attempt())
    assert failure.permanent, "retrying cannot make a forbidden address allowed"


def test_a_bucket_prefix_is_a_folder(settings: Settings) -> None:
    values: dict[str, Any] = dict(settings)
    assert Settings(**{**values, "media_s3_prefix": "vidhook"}).media_s3_prefix == "vidhook/"
    assert Settings(**{**values, "media_s3_prefix": ""}).media_s3_prefix == ""
