"""Input files as fal's runners see them: fetch, size-cap, sniff, decode.

Every problem becomes one fal model-error detail (raised as `FileProblem`), typed the way fal
types them: `file_download_error`, `file_too_large`, `unsupported_image_format`,
`image_load_error`, `unsupported_video_format`, `video_duration_too_long`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import shutil
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.dev.simulator.errors import ErrorDetail, file_error
from service.dev.simulator.ffmpeg import run_ffmpeg
from service.dev.simulator.rules import FileRef

# fal's pages: "Input images up to 8MB in size". Read as MiB, the more lenient reading.
IMAGE_MAX_BYTES = 8 * 1024 * 1024
# No documented cap for videos; Veo input videos are at most 8 s, so 50 MiB is ample.
VIDEO_MAX_BYTES = 50 * 1024 * 1024
# Extend-video: "Input videos up to 8 seconds in length". The slack absorbs container
# rounding (AAC priming makes an exact 8 s clip read as 8.02 s).
VIDEO_MAX_DURATION_S = 8.0
_DURATION_SLACK_S = 0.1

SUPPORTED_IMAGE_FORMATS = ("jpg", "jpeg", "png", "webp", "gif", "avif")
SUPPORTED_VIDEO_FORMATS = ("mp4", "mov", "webm")

_FETCH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_FETCH_DEADLINE_S = 60.0
_DECODE_TIMEOUT_S = 60.0
_DURATION_RE = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FileProblem(Exception):
    """A file input fal would reject; `detail` is the error entry for the 422 body."""

    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(detail["msg"])
        self.detail = detail


@dataclass(frozen=True)
class Still:
    """One decoded frame, normalised to PNG so the renderer can loop it cheaply."""

    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class Clip:
    """An input video: its last frame (where a continuation starts) and its length."""

    last_frame: Still
    duration_s: float | None


def sniff(data: bytes) -> str | None:
    """Name the container/image format from magic bytes, or None when unrecognised."""
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"%PDF":
        return "pdf"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "heic"
        return "mov" if brand == b"qt  " else "mp4"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "svg"
    return None


def _png_size(path: Path) -> tuple[int, int]:
    # IHDR is always the first chunk: width and height are big-endian at bytes 16..24.
    with path.open("rb") as fh:
        header = fh.read(24)
    if len(header) < 24 or not header.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


class MediaLoader:
    """Fetches and decodes file inputs into a per-request work directory."""

    def __init__(
        self, client: httpx.AsyncClient, ffmpeg: str, cache_dir: Path | None = None
    ) -> None:
        self._client = client
        self._ffmpeg = ffmpeg
        # With a cache, a file with the same bytes is decoded once (an ffmpeg run each time
        # otherwise: ~0.5 s of CPU for a video's last frame); the result is the same.
        self._cache_dir = cache_dir

    async def load_image(self, ref: FileRef, workdir: Path, stem: str) -> Still:
        """Fetch and decode an image input. Raises FileProblem."""
        data = await self._read(ref, IMAGE_MAX_BYTES)
        fmt = sniff(data)
        if fmt is not None and fmt not in SUPPORTED_IMAGE_FORMATS:
            raise FileProblem(
                file_error(
                    ref.loc,
                    "unsupported_image_format",
                    f"Unsupported image format: {fmt}.",
                    ref.url,
                    {"supported_formats": list(SUPPORTED_IMAGE_FORMATS)},
                )
            )
        still: Still | None = None
        if fmt is not None:
            source = await self._save(workdir / f"{stem}.src", data)
            still, _ = await self._decode_frame(source, workdir / f"{stem}.png", last=False)
        if still is None:
            raise FileProblem(
                file_error(
                    ref.loc,
                    "image_load_error",
                    "Failed to load the image. Please ensure the image file is not corrupted "
                    "and is in a supported format.",
                    ref.url,
                )
            )
        return still

    async def load_video(self, ref: FileRef, workdir: Path, stem: str) -> Clip:
        """Fetch a video input, check its length, and grab its last frame. Raises FileProblem."""
        data = await self._read(ref, VIDEO_MAX_BYTES)
        fmt = sniff(data)
        still: Still | None = None
        duration_s: float | None = None
        if fmt in SUPPORTED_VIDEO_FORMATS:
            source = await self._save(workdir / f"{stem}.src", data)
            still, duration_s = await self._decode_frame(source, workdir / f"{stem}.png", last=True)
        if still is None:
            if fmt in SUPPORTED_VIDEO_FORMATS:
                msg = "The video could not be decoded."
            else:
                msg = f"Unsupported video format: {fmt or 'unrecognised'}."
            raise FileProblem(
                file_error(
                    ref.loc,
                    "unsupported_video_format",
                    msg,
                    ref.url,
                    {"supported_formats": list(SUPPORTED_VIDEO_FORMATS)},
                )
            )
        if duration_s is not None and duration_s > VIDEO_MAX_DURATION_S + _DURATION_SLACK_S:
            raise FileProblem(
                file_error(
                    ref.loc,
                    "video_duration_too_long",
                    f"Video duration is too long: {duration_s:.2f}s. "
                    f"Maximum allowed is {VIDEO_MAX_DURATION_S:g}s.",
                    ref.url,
                    {"max_duration": VIDEO_MAX_DURATION_S, "provided_duration": duration_s},
                )
            )
        return Clip(still, duration_s)

    async def _read(self, ref: FileRef, max_bytes: int) -> bytes:
        if ref.url.startswith("data:"):
            # Decoding megabytes of base64 is CPU work: keep it off the event loop.
            return await asyncio.to_thread(self._read_data_uri, ref, max_bytes)
        scheme = urllib.parse.urlsplit(ref.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise FileProblem(self._download_error(ref, "Unsupported URL scheme."))
        try:
            async with asyncio.timeout(_FETCH_DEADLINE_S):
                return await self._fetch(ref, max_bytes)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise FileProblem(self._download_error(ref, f"{type(exc).__name__}.")) from exc

    async def _fetch(self, ref: FileRef, max_bytes: int) -> bytes:
        # Input hosts may redirect (presigned URLs, CDNs); fal's downloader follows them.
        async with self._client.stream(
            "GET", ref.url, timeout=_FETCH_TIMEOUT, follow_redirects=True
        ) as response:
            if not response.is_success:
                raise FileProblem(
                    self._download_error(ref, f"Server answered HTTP {response.status_code}.")
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FileProblem(self._too_large(ref, max_bytes))
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FileProblem(self._too_large(ref, max_bytes))
                chunks.append(chunk)
            return b"".join(chunks)

    def _read_data_uri(self, ref: FileRef, max_bytes: int) -> bytes:
        header, sep, payload = ref.url[len("data:") :].partition(",")
        if not sep:
            raise FileProblem(self._download_error(ref, "Malformed data URI."))
        # Base64 is 4/3 the size of what it encodes: refuse oversized input before decoding it.
        if len(payload) * 3 // 4 > max_bytes + 3:
            raise FileProblem(self._too_large(ref, max_bytes))
        try:
            if header.endswith(";base64"):
                data = base64.b64decode(payload, validate=True)
            else:
                data = urllib.parse.unquote_to_bytes(payload)
        except (binascii.Error, ValueError) as exc:
            raise FileProblem(self._download_error(ref, "Malformed data URI.")) from exc
        if len(data) > max_bytes:
            raise FileProblem(self._too_large(ref, max_bytes))
        return data

    async def _save(self, path: Path, data: bytes) -> Path:
        await asyncio.to_thread(path.write_bytes, data)
        return path

    async def _decode_frame(
        self, source: Path, target: Path, *, last: bool
    ) -> tuple[Still | None, float | None]:
        """Decode the first (or last) frame of `source` to PNG, plus the container's duration.

        The still is None when the file does not decode.
        """
        cached: Path | None = None
        if self._cache_dir is not None:
            digest = hashlib.sha256(await asyncio.to_thread(source.read_bytes)).hexdigest()
            cached = self._cache_dir / f"{digest}-{'last' if last else 'first'}"
            hit = await asyncio.to_thread(_cached_decode, cached, target)
            if hit is not None:
                return hit
        if last:
            # Seek near the end; -update 1 keeps overwriting one image, so the last frame wins.
            args = ["-sseof", "-0.5", "-i", str(source), "-update", "1", "-y", str(target)]
        else:
            args = ["-i", str(source), "-frames:v", "1", "-update", "1", "-y", str(target)]
        run = await run_ffmpeg(self._ffmpeg, args, timeout_s=_DECODE_TIMEOUT_S)
        match = _DURATION_RE.search(run.stderr)
        duration_s = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) if match else None
        if not run.ok:
            return None, duration_s
        try:
            width, height = await asyncio.to_thread(_png_size, target)
        except (OSError, ValueError):
            return None, duration_s
        if cached is not None:
            await asyncio.to_thread(_store_decode, cached, target, duration_s)
        return Still(target, width, height), duration_s

    def _download_error(self, ref: FileRef, reason: str) -> ErrorDetail:
        return file_error(ref.loc, "file_download_error", f"File download error. {reason}", ref.url)

    def _too_large(self, ref: FileRef, max_bytes: int) -> ErrorDetail:
        return file_error(
            ref.loc,
            "file_too_large",
            f"File is too large. Maximum allowed size is {max_bytes} bytes.",
            ref.url,
            {"max_size": max_bytes},
        )


def _cached_decode(cached: Path, target: Path) -> tuple[Still, float | None] | None:
    meta = cached.with_suffix(".json")
    if not meta.is_file():
        return None
    facts = json.loads(meta.read_text())
    shutil.copyfile(cached.with_suffix(".png"), target)
    return Still(target, facts["width"], facts["height"]), facts["duration_s"]


def _store_decode(cached: Path, decoded: Path, duration_s: float | None) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    width, height = _png_size(decoded)
    shutil.copyfile(decoded, cached.with_suffix(".png"))
    # Written last: its presence says the PNG is complete.
    facts = {"width": width, "height": height, "duration_s": duration_s}
    cached.with_suffix(".json").write_text(json.dumps(facts))
