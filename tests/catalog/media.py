"""Tiny files with real magic numbers, and data URIs built from them, for validation tests."""

from __future__ import annotations

import base64
import struct

PNG = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 1280, 720, 8, 2, 0, 0, 0)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 16
WEBP = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8 " + b"\x00" * 22
GIF = b"GIF89a" + struct.pack("<HH", 1280, 720) + b"\x00" * 20
HEIC = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic"
TEXT = b"hello, this is certainly not an image file at all"
WEBM = b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04B\xf3\x81\x08B\x82\x84webm"
MKV = b"\x1aE\xdf\xa3\xa3B\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04B\xf3\x81\x08B\x82\x88matroska"


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def mvhd(duration: int, timescale: int = 1000, version: int = 0) -> bytes:
    if version == 1:
        times = struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        times = struct.pack(">IIII", 0, 0, timescale, duration)
    return box(b"mvhd", bytes([version, 0, 0, 0]) + times + b"\x00" * 80)


def mp4(
    duration_s: float | None,
    *,
    brand: bytes = b"isom",
    version: int = 0,
    mdat_bytes: int = 64,
    moov_last: bool = True,
) -> bytes:
    """An MP4/QuickTime skeleton: ftyp, mdat and a moov holding only an mvhd.

    `duration_s=None` writes duration 0, as fragmented MP4s do. `moov_last` puts the movie box
    after the media data, the layout of files not optimised for streaming.
    """
    ftyp = box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"mp41")
    duration = 0 if duration_s is None else round(duration_s * 90_000)
    moov = box(b"moov", mvhd(duration, 90_000, version) + box(b"trak", b"\x00" * 16))
    mdat = box(b"mdat", b"\x00" * mdat_bytes)
    return ftyp + (mdat + moov if moov_last else moov + mdat)


def data_uri(media_type: str, payload: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(payload).decode('ascii')}"


def padded(head: bytes, total_bytes: int) -> bytes:
    """`head` followed by zeros up to exactly `total_bytes`."""
    return head + b"\x00" * (total_bytes - len(head))


def oversize_data_uri(media_type: str, decoded_bytes: int, fill: str = "A") -> str:
    """A data URI whose payload would decode to `decoded_bytes`, built without encoding."""
    return f"data:{media_type};base64," + fill * (4 * -(-decoded_bytes // 3))
