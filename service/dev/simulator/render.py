"""Real MP4s from still frames with the bundled ffmpeg: H.264 yuv420p, 24 fps, optional AAC.

Looks: each still is scaled to cover the frame and centre-cropped (fal: "If the image is not
in 16:9 or 9:16 aspect ratio, it will be cropped to fit"). The only motion is a thin progress
bar along the bottom edge, which is nearly free to encode; rendering speed matters more than
spectacle here. Two stills cross-fade (first/last frame); several play as a slideshow.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.dev.simulator.ffmpeg import run_ffmpeg

FPS = 24
_SIZES_16_9 = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
_MAX_CROSSFADE_S = 2.0
# Generous: a 4k 8 s render takes ~15 s on two cores.
_RENDER_TIMEOUT_S = 600.0
# A quiet 220 Hz tone: clearly an audio track, not painful when a human plays the file.
_AUDIO_SOURCE = "sine=frequency=220:sample_rate=48000,volume=0.2"


class RenderError(Exception):
    """ffmpeg failed to produce the video."""


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Pixel size for a resolution name and a concrete ratio ("16:9" or "9:16")."""
    width, height = _SIZES_16_9[resolution]
    return (height, width) if aspect_ratio == "9:16" else (width, height)


def resolve_aspect_ratio(requested: str, source_width: int, source_height: int) -> str:
    """Turn fal's `auto` values into a concrete ratio from the source's orientation.

    `auto`: portrait sources (taller than wide) give 9:16, everything else 16:9.
    `auto_prefer_portrait` (Veo 2): 9:16 unless the source is strictly landscape, so a
    square source goes portrait.
    """
    if requested == "auto":
        return "9:16" if source_height > source_width else "16:9"
    if requested == "auto_prefer_portrait":
        return "16:9" if source_width > source_height else "9:16"
    return requested


@dataclass(frozen=True)
class RenderPlan:
    """What to render: stills in order, frame size, exact duration, audio or not."""

    stills: tuple[Path, ...]
    width: int
    height: int
    duration_s: int
    audio: bool
    output: Path


def _cover(index: int, width: int, height: int) -> str:
    return (
        f"[{index}:v]scale={width}:{height}:force_original_aspect_ratio=increase,"
        f"crop={width}:{height},setsar=1,format=yuv420p[s{index}]"
    )


def build_args(plan: RenderPlan) -> list[str]:
    """The ffmpeg argument list for `plan` (without the binary and global flags)."""
    count = len(plan.stills)
    if count == 0:
        raise ValueError("a render needs at least one still")
    total = plan.duration_s
    # Crossfade: each still lasts the whole video; the fade sits in the middle.
    # Slideshow: each still gets an equal share.
    per_still_s = total if count <= 2 else total / count
    args: list[str] = []
    for still in plan.stills:
        args += ["-loop", "1", "-framerate", str(FPS), "-t", f"{per_still_s:.6f}", "-i", str(still)]
    if plan.audio:
        args += ["-f", "lavfi", "-t", str(total), "-i", _AUDIO_SOURCE]
    graph = [_cover(i, plan.width, plan.height) for i in range(count)]
    if count == 1:
        joined = "[s0]"
    elif count == 2:
        fade_s = min(_MAX_CROSSFADE_S, total / 2)
        offset_s = (total - fade_s) / 2
        graph.append(f"[s0][s1]xfade=transition=fade:duration={fade_s}:offset={offset_s}[joined]")
        joined = "[joined]"
    else:
        inputs = "".join(f"[s{i}]" for i in range(count))
        graph.append(f"{inputs}concat=n={count}:v=1:a=0[joined]")
        joined = "[joined]"
    # A white bar slides in along the bottom edge as time passes (overlay re-evaluates its
    # position every frame; drawbox would not).
    bar_h = max(4, plan.height // 120)
    graph.append(f"color=c=white:s={plan.width}x{bar_h}:r={FPS}[bar]")
    graph.append(
        f"{joined}[bar]overlay=x='-w+w*t/{total}':y=H-h:shortest=1:eval=frame,format=yuv420p[v]"
    )
    args += ["-filter_complex", ";".join(graph), "-map", "[v]"]
    if plan.audio:
        args += ["-map", f"{count}:a", "-c:a", "aac", "-b:a", "128k"]
    else:
        args += ["-an"]
    args += [
        "-c:v", "libx264", "-preset", "fast", "-pix_fmt", "yuv420p", "-r", str(FPS),
        "-t", str(total), "-movflags", "+faststart", "-f", "mp4", "-y",
    ]  # fmt: skip
    return args


class Renderer:
    """Renders plans with one ffmpeg binary; the output appears atomically when complete.

    With `cache_dir`, a plan whose stills have the same bytes and whose frame size, duration and
    audio are the same as an earlier one's gets a hard link to that earlier file: ffmpeg is
    deterministic here, so the bytes are what it would have written, in no time (a 720p render
    costs seconds of CPU; load tests of hundreds of jobs on one machine need the CPU elsewhere).
    """

    def __init__(self, ffmpeg: str, cache_dir: Path | None = None) -> None:
        self._ffmpeg = ffmpeg
        self._cache_dir = cache_dir
        # One render per cache key at a time: a burst of identical requests renders once.
        self._rendering: dict[Path, asyncio.Lock] = {}

    async def render(self, plan: RenderPlan) -> None:
        """Render `plan` to `plan.output`. Raises RenderError (or TimeoutError on overrun)."""
        cached = await asyncio.to_thread(self._cached_path, plan)
        if cached is None:
            await self._render(plan, None)
            return
        async with self._rendering.setdefault(cached, asyncio.Lock()):
            if await asyncio.to_thread(cached.is_file):
                partial = plan.output.with_name(plan.output.name + ".part")
                await asyncio.to_thread(_link_or_replace, cached, partial)
                await asyncio.to_thread(partial.replace, plan.output)
                return
            await self._render(plan, cached)

    async def _render(self, plan: RenderPlan, cached: Path | None) -> None:
        partial = plan.output.with_name(plan.output.name + ".part")
        run = await run_ffmpeg(self._ffmpeg, [*build_args(plan), str(partial)], _RENDER_TIMEOUT_S)
        if not run.ok:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise RenderError(run.tail())
        # The file server must never hand out a half-written MP4.
        await asyncio.to_thread(partial.replace, plan.output)
        if cached is not None:
            await asyncio.to_thread(_link_or_replace, plan.output, cached)

    def _cached_path(self, plan: RenderPlan) -> Path | None:
        if self._cache_dir is None:
            return None
        stills = [hashlib.sha256(still.read_bytes()).hexdigest() for still in plan.stills]
        key = json.dumps([stills, plan.width, plan.height, plan.duration_s, plan.audio])
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        return self._cache_dir / (hashlib.sha256(key.encode()).hexdigest() + ".mp4")


def _link_or_replace(source: Path, target: Path) -> None:
    """Make `target` a hard link to `source` (replacing it), atomically for readers."""
    temporary = target.with_name(f"{target.name}.{os.getpid()}.link")
    temporary.unlink(missing_ok=True)
    os.link(source, temporary)
    temporary.replace(target)


def plan_for(
    stills: Sequence[Path],
    *,
    resolution: str,
    aspect_ratio: str,
    duration_s: int,
    audio: bool,
    output: Path,
) -> RenderPlan:
    """Build a plan from a concrete aspect ratio ("16:9" or "9:16")."""
    width, height = frame_size(resolution, aspect_ratio)
    return RenderPlan(tuple(stills), width, height, duration_s, audio, output)
