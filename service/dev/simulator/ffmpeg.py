"""Run the bundled ffmpeg as an asyncio subprocess, never blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import imageio_ffmpeg

_STDERR_TAIL_CHARS = 2000


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped in the imageio-ffmpeg wheel (with libx264 and aac)."""
    path: str = imageio_ffmpeg.get_ffmpeg_exe()
    return path


@dataclass(frozen=True)
class FfmpegRun:
    returncode: int
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self) -> str:
        """The end of stderr, where ffmpeg says what went wrong."""
        return self.stderr[-_STDERR_TAIL_CHARS:]


async def run_ffmpeg(exe: str, args: Sequence[str], timeout_s: float) -> FfmpegRun:
    """Run `exe args...`; kill it if it overruns `timeout_s` or the caller is cancelled.

    Raises TimeoutError when the deadline passes (after the process is reaped).
    """
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-hide_banner",
        "-nostdin",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            _, stderr = await proc.communicate()
    except BaseException:
        # Cancellation (shutdown, cancel) or timeout: never leave an orphan encoder behind.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    returncode = proc.returncode if proc.returncode is not None else -1
    return FfmpegRun(returncode, stderr.decode("utf-8", errors="replace"))
