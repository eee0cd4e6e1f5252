"""A 100 MB output mirrored by a real worker process, whose memory is measured while it copies.

The worker runs as `vidhook worker` in its own process (configured only by environment, as
in production), so its resident set is its own and not the test runner's. The source is
generated as it is served; nothing of that size is kept in the repo or in memory here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from service.keys import RedisKeys
from service.settings import Settings
from tests.media.conftest import SourceServer, big_chunks, finished_by_fal, object_digest, run

SIZE_BYTES = 100 * 1024 * 1024
MAX_RSS_GROWTH_BYTES = 50 * 1024 * 1024
MIB = 1024 * 1024


def _environment(settings: Settings) -> dict[str, str]:
    """The settings as the environment variables `vidhook worker` reads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIA_", "S3_", "FAL_"))}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def _peak_rss_bytes(pid: int) -> int:
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def worker_process(s3_settings: Settings) -> Iterator[tuple[psutil.Process, Settings]]:
    values: dict[str, Any] = dict(s3_settings)
    values.update(redis_key_prefix="big:", arq_queue_name="big:queue", mirror_timeout_s=120.0)
    settings = Settings(**values)
    command = [str(Path(sys.executable).with_name("vidhook")), "worker"]
    child = subprocess.Popen(
        command, env=_environment(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        # ARQ records its health key on its first pass through the main loop: it is ready.
        health_key = f"{settings.arq_queue_name}:health-check"
        client = redis.Redis.from_url(settings.redis_url)
        deadline = time.monotonic() + 30
        while not client.exists(health_key):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.05)
        client.close()
        yield psutil.Process(child.pid), settings
    finally:
        child.terminate()
        child.wait(timeout=15)
        if child.stderr:
            child.stderr.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_a_100_mb_mirror_streams_with_bounded_worker_memory(
    worker_process: tuple[psutil.Process, Settings], source_server: SourceServer
) -> None:
    process, settings = worker_process
    expected = hashlib.sha256()
    for chunk in big_chunks(SIZE_BYTES):
        expected.update(chunk)
    time.sleep(0.5)  # let start-up allocations settle before the baseline
    baseline = process.memory_info().rss
    # Restart the kernel's high-water mark from now (Linux: clear_refs 5), so the peak
    # measured is the copy's, not start-up's.
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")
    sampled_peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal sampled_peak
        while not done.is_set():
            sampled_peak = max(sampled_peak, process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    url = f"{source_server.url}/big/{SIZE_BYTES}.mp4"
    started = time.monotonic()
    job_id = run(
        finished_by_fal(
            settings,
            {"video": {"url": url, "content_type": "video/mp4", "file_size": SIZE_BYTES}},
        )
    )
    client = redis.Redis.from_url(settings.redis_url)
    job_key = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name).job(job_id)
    mirror: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        raw = client.hget(job_key, "mirror")
        mirror = json.loads(raw) if raw else {}
        if mirror.get("status") not in (None, "pending"):
            break
        time.sleep(0.05)
    elapsed_s = time.monotonic() - started
    done.set()
    sampler.join()
    peak = max(sampled_peak, _peak_rss_bytes(process.pid))
    assets = json.loads(client.hget(job_key, "assets") or b"[]")
    client.close()

    growth = peak - baseline
    print(
        f"\n100 MB mirror: {elapsed_s:.1f} s ({SIZE_BYTES / MIB / elapsed_s:.0f} MiB/s); "
        f"worker RSS {baseline / MIB:.0f} MiB before, peak {peak / MIB:.0f} MiB, "
        f"growth {growth / MIB:.1f} MiB"
    )
    assert mirror.get("status") == "mirrored", mirror
    [asset] = assets
    assert asset["bytes"] == SIZE_BYTES and asset["sha256"] == expected.hexdigest()
    size, sha256, etag = run(object_digest(settings, asset["key"]))
    assert (size, sha256) == (SIZE_BYTES, expected.hexdigest())
    # A multipart ETag ends in its part count; parts are part_bytes up to one chunk more.
    parts = int(etag.strip('"').rpartition("-")[2])
    assert 2 <= parts <= -(-SIZE_BYTES // settings.media_part_bytes), etag
    assert growth < MAX_RSS_GROWTH_BYTES, f"worker RSS grew by {growth / MIB:.1f} MiB"
