"""Real servers for the simulator tests: the simulator itself and a webhook/asset receiver."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

from service.dev.localredis import free_port
from service.dev.simulator import SimulatorConfig, create_app
from tests.simulator.helpers import FalClient, Receiver
from tests.support.servers import ServerThread

FAL_KEY = "sim-test-key:secret"


def _ffmpeg(*args: str) -> None:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small input files: images in several shapes and formats, two videos, one broken PNG."""
    root = tmp_path_factory.mktemp("assets")
    frame = ["-frames:v", "1"]
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180", *frame, str(root / "landscape.png"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=navy:size=320x180", *frame, str(root / "navy.png"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=180x320", *frame, str(root / "portrait.jpg"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=200x200", *frame, str(root / "square.png"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x36", *frame, str(root / "tiny.bmp"))
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24", "-t", "4", *encode,
            str(root / "clip.mp4"))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=24", "-t", "10", *encode,
            str(root / "long.mp4"))  # fmt: skip
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"definitely not image data" * 8)
    return root


@pytest.fixture(scope="session")
def receiver(assets: Path) -> Iterator[Receiver]:
    """The webhook receiver and asset host; `receiver.url` is its base URL."""
    peer = Receiver(assets)
    with ServerThread(peer.app) as server:
        peer.url = server.url
        yield peer


@dataclass(frozen=True)
class Sim:
    url: str
    config: SimulatorConfig
    fal: FalClient


def _start_sim(tmp: Path, **overrides: Any) -> Iterator[Sim]:
    port = free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "delay_s": 0.0,
        "fal_key": FAL_KEY,
        "webhook_time_scale": 0.001,
        "concurrency": 2,
        "data_dir": tmp,
        **overrides,
    }
    config = SimulatorConfig(**settings)
    with ServerThread(create_app(config), port=port) as server:
        fal = FalClient(server.url, FAL_KEY)
        try:
            yield Sim(server.url, config, fal)
        finally:
            fal.close()


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """The simulator with no inference delay and fast webhook retries."""
    yield from _start_sim(tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="session")
def slow_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """One request at a time with an inference delay, so queue states can be observed."""
    yield from _start_sim(tmp_path_factory.mktemp("slow-sim"), delay_s=0.5, concurrency=1)


@pytest.fixture
def hook(receiver: Receiver) -> Callable[..., tuple[str, str]]:
    """Make a fresh webhook target: returns (key, url); `query` adds receiver behaviour."""

    def make(query: str = "") -> tuple[str, str]:
        key = uuid.uuid4().hex
        return key, f"{receiver.url}/hooks/{key}{'?' + query if query else ''}"

    return make
