"""Invalid input is accepted at submit, then fails like fal: ERROR webhook and a 422 result."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.dev.localredis import free_port
from tests.simulator.conftest import Sim
from tests.simulator.helpers import Receiver, data_uri, verifying_key_index


def _fail(
    sim: Sim,
    receiver: Receiver,
    hook: Callable[..., tuple[str, str]],
    endpoint_id: str,
    body: dict[str, Any],
) -> list[dict[str, Any]]:
    """Submit, then check every channel reports the same 422; return its detail list."""
    key, webhook = hook()
    submitted = sim.fal.submit(endpoint_id, body, webhook=webhook)
    [delivery] = receiver.wait(key)
    assert verifying_key_index(delivery, sim.fal.jwks()) is not None
    payload = json.loads(delivery.body)
    assert payload["status"] == "ERROR"
    assert payload["error"] == "Invalid status code: 422"
    assert payload["request_id"] == submitted["request_id"]

    status = sim.fal.wait_completed(submitted)
    assert status["error"]
    assert status["error_type"] == payload["payload"]["detail"][0]["type"]

    result = sim.fal.http.get(submitted["response_url"])
    assert result.status_code == 422
    assert result.json() == payload["payload"]
    detail: list[dict[str, Any]] = payload["payload"]["detail"]
    return detail


def _by_loc(detail: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(entry["loc"]): entry for entry in detail}


def test_schema_errors_are_all_reported_at_once(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]], assets: Path
) -> None:
    detail = _fail(
        sim,
        receiver,
        hook,
        "fal-ai/veo3.1/image-to-video",
        {
            "image_url": data_uri(assets / "landscape.png", "image/png"),
            "duration": "5s",
            "resolution": "2k",
        },
    )
    errors = _by_loc(detail)
    assert set(errors) == {("body", "prompt"), ("body", "duration"), ("body", "resolution")}
    assert errors[("body", "prompt")]["type"] == "missing"
    assert errors[("body", "duration")]["type"] == "literal_error"
    assert errors[("body", "duration")]["ctx"]["expected"] == "'4s', '6s' or '8s'"
    assert errors[("body", "resolution")]["type"] == "literal_error"


def test_file_problems_get_fal_error_types(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]], assets: Path
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/gone.png"
    detail = _fail(
        sim,
        receiver,
        hook,
        "fal-ai/veo3.1/reference-to-video",
        {
            "prompt": "refs",
            "image_urls": [
                data_uri(assets / "corrupt.png", "image/png"),
                unreachable,
                f"{receiver.url}/assets/missing.png",
                f"{receiver.url}/oversized.png",
                f"{receiver.url}/assets/tiny.bmp",
            ],
        },
    )
    errors = _by_loc(detail)
    types = {loc[2]: entry["type"] for loc, entry in errors.items()}
    assert types == {
        0: "image_load_error",
        1: "file_download_error",
        2: "file_download_error",
        3: "file_too_large",
        4: "unsupported_image_format",
    }
    assert errors[("body", "image_urls", 1)]["input"] == unreachable
    assert errors[("body", "image_urls", 3)]["ctx"]["max_size"] == 8 * 1024 * 1024
    assert (
        errors[("body", "image_urls", 0)]["url"] == "https://docs.fal.ai/errors/#image_load_error"
    )
    # Data URIs are echoed shortened, not in full.
    assert len(errors[("body", "image_urls", 0)]["input"]) < 100


def test_extend_rejects_input_video_longer_than_8s(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    [error] = _fail(
        sim,
        receiver,
        hook,
        "fal-ai/veo3.1/fast/extend-video",
        {"prompt": "more", "video_url": f"{receiver.url}/assets/long.mp4"},
    )
    assert error["type"] == "video_duration_too_long"
    assert error["loc"] == ["body", "video_url"]
    assert error["ctx"]["max_duration"] == 8


def test_extend_rejects_an_image_as_video_and_veo2_rejects_veo31_enums(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    [error] = _fail(
        sim,
        receiver,
        hook,
        "fal-ai/veo3.1/extend-video",
        {"prompt": "more", "video_url": f"{receiver.url}/assets/landscape.png"},
    )
    assert error["type"] == "unsupported_video_format"
    [error] = _fail(
        sim,
        receiver,
        hook,
        "fal-ai/veo2/image-to-video",
        {"prompt": "p", "image_url": f"{receiver.url}/assets/landscape.png", "duration": "4s"},
    )
    assert error["type"] == "literal_error"
    assert error["loc"] == ["body", "duration"]
