"""Every endpoint family renders a real MP4 with the size, length and audio fal would give.

Renders take a second or two each, so the module submits them all up front (the `renders`
fixture) and each test then waits for and checks its own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.dev.simulator.ffmpeg import ffmpeg_exe
from service.dev.simulator.render import Renderer, plan_for
from tests.simulator.conftest import Sim
from tests.simulator.helpers import Mp4Info, Receiver, data_uri, probe_mp4, verifying_key_index

DURATION_TOLERANCE_S = 0.1


@pytest.fixture(scope="module")
def renders(sim: Sim, receiver: Receiver, assets: Path) -> dict[str, dict[str, Any]]:
    """Submit every render of this module at once; name -> submit answer (+ webhook key)."""
    asset = f"{receiver.url}/assets"
    hook_key = uuid.uuid4().hex
    cases: dict[str, tuple[str, dict[str, Any], str | None]] = {
        "i2v_url": (
            "fal-ai/veo3.1/fast/image-to-video",
            {"prompt": "a test card", "image_url": f"{asset}/landscape.png", "duration": "4s"},
            f"{receiver.url}/hooks/{hook_key}",
        ),
        "i2v_data_uri_portrait": (
            "fal-ai/veo3.1/image-to-video",
            {
                "prompt": "portrait",
                "image_url": data_uri(assets / "portrait.jpg", "image/jpeg"),
                "duration": "4s",
                "resolution": "1080p",
                "generate_audio": False,
            },
            None,
        ),
        "flf_9_16": (
            "fal-ai/veo3.1/fast/first-last-frame-to-video",
            {
                "prompt": "fade",
                "first_frame_url": f"{asset}/landscape.png",
                "last_frame_url": f"{asset}/navy.png",
                "aspect_ratio": "9:16",
                "duration": "4s",
            },
            None,
        ),
        "veo2": (
            "fal-ai/veo2/image-to-video",
            # generate_audio is no Veo 2 field: ignored like any unknown field.
            {
                "prompt": "square",
                "image_url": f"{asset}/square.png",
                "aspect_ratio": "auto_prefer_portrait",
                "generate_audio": True,
            },
            None,
        ),
        "r2v": (
            "fal-ai/veo3.1/reference-to-video",
            {
                "prompt": "refs",
                "image_urls": [
                    f"{asset}/landscape.png",
                    f"{asset}/navy.png",
                    f"{asset}/square.png",
                ],
            },
            None,
        ),
        "extend": (
            "fal-ai/veo3.1/extend-video",
            {"prompt": "go on", "video_url": f"{asset}/clip.mp4", "generate_audio": False},
            None,
        ),
    }
    submitted = {}
    for name, (endpoint_id, body, webhook) in cases.items():
        submitted[name] = {**sim.fal.submit(endpoint_id, body, webhook=webhook), "hook": hook_key}
    return submitted


def _finish(sim: Sim, submitted: dict[str, Any]) -> tuple[dict[str, Any], Mp4Info]:
    status = sim.fal.wait_completed(submitted)
    assert "error" not in status, (
        status.get("error"),
        status.get("error_type"),
        status.get("logs"),
    )
    assert status["metrics"]["inference_time"] > 0
    result = sim.fal.http.get(submitted["response_url"])
    assert result.status_code == 200, result.text
    assert result.headers["x-fal-request-id"] == submitted["request_id"]
    output: dict[str, Any] = result.json()
    video = httpx.get(output["video"]["url"])
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert output["video"]["content_type"] == "video/mp4"
    assert output["video"]["file_size"] == len(video.content)
    assert output["video"]["file_name"] == output["video"]["url"].rsplit("/", 1)[1]
    return output, probe_mp4(video.content)


def _assert_video(info: Mp4Info, size: tuple[int, int], duration_s: float, audio: bool) -> None:
    assert info.video_codec == "h264"
    assert (info.width, info.height) == size
    assert abs(info.duration_s - duration_s) <= DURATION_TOLERANCE_S, info.duration_s
    assert info.audio_codec == ("aac" if audio else None), info


def test_image_to_video_from_url_ends_in_signed_ok_webhook_and_result(
    sim: Sim, receiver: Receiver, renders: dict[str, dict[str, Any]]
) -> None:
    submitted = renders["i2v_url"]
    output, info = _finish(sim, submitted)
    # Veo 3.1 defaults: `auto` follows the landscape image, 720p, audio on.
    _assert_video(info, (1280, 720), 4.0, audio=True)

    [delivery] = receiver.wait(submitted["hook"])
    assert verifying_key_index(delivery, sim.fal.jwks()) == 0
    assert delivery.headers["x-fal-webhook-request-id"] == submitted["request_id"]
    assert delivery.headers["x-fal-webhook-user-id"] == sim.config.user_id
    assert delivery.headers["content-type"] == "application/json"
    payload = json.loads(delivery.body)
    assert payload == {
        "request_id": submitted["request_id"],
        "gateway_request_id": submitted["request_id"],
        "status": "OK",
        "payload": output,
    }


def test_rendered_file_is_served_with_range_support(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    output, _ = _finish(sim, renders["i2v_url"])
    partial = httpx.get(output["video"]["url"], headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206
    assert len(partial.content) == 100
    assert httpx.get(f"{sim.url}/files/nothing-here.mp4").status_code == 404


def test_data_uri_portrait_image_gives_auto_9_16_at_1080p_without_audio(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    _, info = _finish(sim, renders["i2v_data_uri_portrait"])
    _assert_video(info, (1080, 1920), 4.0, audio=False)


def test_first_last_frame_honours_explicit_9_16(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    _, info = _finish(sim, renders["flf_9_16"])
    _assert_video(info, (720, 1280), 4.0, audio=True)


def test_veo2_is_silent_720p_with_5s_default_and_portrait_preference(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    _, info = _finish(sim, renders["veo2"])
    _assert_video(info, (720, 1280), 5.0, audio=False)


def test_reference_to_video_uses_its_8s_default(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    _, info = _finish(sim, renders["r2v"])
    _assert_video(info, (1280, 720), 8.0, audio=True)


def test_extend_video_renders_the_7s_continuation(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    _, info = _finish(sim, renders["extend"])
    _assert_video(info, (1280, 720), 7.0, audio=False)


def test_only_finished_files_remain_once_renders_are_done(
    sim: Sim, renders: dict[str, dict[str, Any]]
) -> None:
    for submitted in renders.values():
        sim.fal.wait_completed(submitted)
    data_dir = sim.config.data_dir
    assert isinstance(data_dir, Path)
    assert not list(data_dir.glob("*.part"))
    assert not list((data_dir / "work").iterdir())


def test_the_render_cache_hands_an_identical_plan_the_same_bytes_and_a_new_one_a_new_render(
    tmp_path: Path,
) -> None:
    still = Path("service/dev/simulator/samples/sample.jpg")
    renderer = Renderer(ffmpeg_exe(), cache_dir=tmp_path / "cache")

    def render(name: str, duration_s: int) -> tuple[Path, float]:
        output = tmp_path / name
        plan = plan_for(
            [still], resolution="720p", aspect_ratio="16:9", duration_s=duration_s,
            audio=False, output=output,
        )  # fmt: skip
        started = time.monotonic()
        asyncio.run(renderer.render(plan))
        return output, time.monotonic() - started

    first, _ = render("a.mp4", 4)
    again, took_s = render("b.mp4", 4)
    other, _ = render("c.mp4", 5)
    assert again.read_bytes() == first.read_bytes() and took_s < 0.5
    assert first.stat().st_ino == again.stat().st_ino != other.stat().st_ino
    assert abs(probe_mp4(other.read_bytes()).duration_s - 5) <= DURATION_TOLERANCE_S
