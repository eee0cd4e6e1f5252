"""What a file really is: data URI checks, magic-number sniffing, MP4 durations.

One set of checks for every way a file reaches vidhook: data URIs in `POST /v1/jobs`
(`data_uri_problem`), uploads to `POST /v1/files` (`upload_problem`), and outputs mirrored
from fal (`sniff` names their type when fal does not).

Data URIs are checked completely but cheaply: the decoded size is computed from the payload
length before anything else (a 50 MB string is refused in microseconds), the base64 alphabet
and padding are checked over the whole payload without decoding it, and only the first bytes
are decoded to sniff the real format. Declared and sniffed type must both be accepted (a PNG
labelled image/jpeg passes; text labelled image/png does not). MP4/QuickTime videos have their
container duration read from the `mvhd` box, reading only box headers.

Each check returns a `FileProblem` (or None) whose message starts with the `subject` given
(the field's path, "the upload"), so callers attach it to their own error shape.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from service.catalog import IMAGE_FILE, VIDEO_FILE, FileSpec

# Tolerance over the documented 8 s: container rounding and AAC priming make an exact 8 s
# clip read as ~8.02 s, and refusing a Veo-made clip that way would be a false refusal.
VIDEO_DURATION_SLACK_S = 0.1
# 64 bytes cover every magic number below, including the EBML DocType of WebM.
SNIFF_BYTES = 64
UPLOAD_SPECS: tuple[FileSpec, ...] = (IMAGE_FILE, VIDEO_FILE)
"""What `POST /v1/files` accepts: anything some job field accepts, within that field's limits."""
UPLOAD_MEDIA_TYPES = tuple(t for spec in UPLOAD_SPECS for t in spec.media_types)

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
# A data URI header ("data:image/jpeg;base64,") is short; bounding the search for its comma
# keeps a malformed 50 MB string cheap.
_DATA_URI_HEADER_MAX = 200
_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_AUDIO_MP4_BRANDS = {b"M4A ", b"M4B ", b"M4P "}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
# Crafted files could chain millions of 8-byte boxes; real MP4s have a handful at each level.
_MAX_MP4_BOXES = 256
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "audio/mp4": ".m4a",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
}


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Why a file is refused: a stable machine `type`, a sentence, structured extras."""

    type: str
    msg: str
    ctx: Mapping[str, Any] | None = None


class ByteSource(Protocol):
    """Random access to a file's bytes (decoded base64, or bytes in memory)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


def normalise_media_type(value: str) -> str:
    """`Image/JPG; charset=x` -> `image/jpeg`: lower case, no parameters, common aliases."""
    media_type = value.split(";", 1)[0].strip().lower()
    return _MEDIA_TYPE_ALIASES.get(media_type, media_type)


def extension_for(media_type: str | None) -> str:
    """A file name extension for `media_type` ('' when unknown)."""
    return _EXTENSIONS.get(media_type or "", "")


def data_uri_problem(file: FileSpec, value: str, subject: str) -> FileProblem | None:
    """Why the data URI `value` is not acceptable for `file`, or None when it is."""
    comma = value.find(",", 5, _DATA_URI_HEADER_MAX)
    header = value[5:comma] if comma > 0 else ""
    if comma < 0 or not header.endswith(";base64"):
        return FileProblem(
            "invalid_data_uri",
            f"{subject} must be a base64 data URI: data:<media type>;base64,<payload>.",
        )
    declared = normalise_media_type(header)
    problem = _declared_problem(file, declared, subject)
    if problem is not None:
        return problem
    start = comma + 1
    length = len(value) - start
    padding = 2 if value.endswith("==") else 1 if value.endswith("=") else 0
    size = length // 4 * 3 - padding if length % 4 == 0 else length * 3 // 4
    if size > file.max_bytes:
        return _too_large(
            file, subject, size, f"{subject} decodes to about {size} bytes", data_uri=True
        )
    if length == 0:
        return FileProblem("invalid_data_uri", f"{subject} has an empty payload.")
    error = _base64_error(value, start, length)
    if error:
        return FileProblem(
            "invalid_base64",
            f"{subject} is not valid base64 ({error}); use standard base64 with padding and "
            "no line breaks.",
        )
    return _content_problem(file, declared, Base64Source(value, start, size), subject)


def upload_problem(
    data: bytes, declared: str | None, subject: str
) -> tuple[FileSpec, str] | FileProblem:
    """The spec and media type of an uploaded file, or why it is refused.

    The bytes decide the kind (image or video); a declared type other than the generic
    `application/octet-stream` must be one that kind accepts, as for data URIs.
    """
    sniffed = sniff(data[:SNIFF_BYTES])
    spec = next((s for s in UPLOAD_SPECS if sniffed in s.media_types), None)
    if spec is None:
        allowed = list(UPLOAD_MEDIA_TYPES)
        what = f"are {sniffed}" if sniffed else "are not a recognisable image or video"
        return FileProblem(
            "unsupported_media_type",
            f"{subject}'s bytes {what}; accepted: {', '.join(allowed)}.",
            {"allowed": allowed, "detected": sniffed, "declared": declared},
        )
    assert sniffed is not None
    declared = normalise_media_type(declared or "")
    if declared in ("", "application/octet-stream"):
        declared = sniffed
    problem = _declared_problem(spec, declared, subject)
    if problem is None and len(data) > spec.max_bytes:
        problem = _too_large(spec, subject, len(data), f"{subject} is {len(data)} bytes")
    if problem is None:
        problem = _content_problem(spec, declared, BytesSource(data), subject)
    return problem if problem is not None else (spec, sniffed)


def decode_data_uri(value: str) -> tuple[str, bytes]:
    """(media type, bytes) of a data URI that passed `data_uri_problem`."""
    header, _, payload = value[5:].partition(",")
    return normalise_media_type(header), base64.b64decode(payload, validate=True)


def sniff(head: bytes) -> str | None:
    """Media type from magic numbers; also names common refused formats for clearer errors."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "image/heic"
        if brand in _AVIF_BRANDS:
            return "image/avif"
        if brand in _AUDIO_MP4_BRANDS:
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "video/quicktime"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "video/x-matroska" if b"matroska" in head else "video/webm"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[:2] == b"BM":
        return "image/bmp"
    if head[:4] == b"%PDF":
        return "application/pdf"
    return None


class Base64Source:
    """Random access to the decoded bytes of a validated base64 payload, decoding on demand."""

    __slots__ = ("_payload_start", "_size", "_value")

    def __init__(self, value: str, payload_start: int, size: int) -> None:
        self._value = value
        self._payload_start = payload_start
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        first_quad = offset // 3
        end_quad = -(-min(offset + length, self._size) // 3)
        chunk = self._value[
            self._payload_start + 4 * first_quad : self._payload_start + 4 * end_quad
        ]
        skip = offset - 3 * first_quad
        return binascii.a2b_base64(chunk)[skip : skip + length]


class BytesSource:
    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


def mp4_duration_s(source: ByteSource) -> float | None:
    """Duration from the movie header (`moov`/`mvhd`), None when absent or unknown."""
    moov = _find_box(source, 0, source.size, b"moov")
    if moov is None:
        return None
    mvhd = _find_box(source, moov[0], moov[1], b"mvhd")
    if mvhd is None:
        return None
    body = source.read(mvhd[0], 32)
    if len(body) < 20:
        return None
    if body[0] == 1:
        if len(body) < 32:
            return None
        timescale, duration = int.from_bytes(body[20:24]), int.from_bytes(body[24:32])
        unknown = 2**64 - 1
    else:
        timescale, duration = int.from_bytes(body[12:16]), int.from_bytes(body[16:20])
        unknown = 2**32 - 1
    # Fragmented MP4s leave the duration 0 (or all ones): nothing to check then.
    if timescale == 0 or duration in (0, unknown):
        return None
    return duration / timescale


def _declared_problem(file: FileSpec, declared: str, subject: str) -> FileProblem | None:
    if declared in file.media_types:
        return None
    what = f'"{declared}"' if declared else "no media type"
    allowed = list(file.media_types)
    return FileProblem(
        "unsupported_media_type",
        f"{subject} declares {what}; accepted: {', '.join(allowed)}.",
        {"allowed": allowed, "declared": declared},
    )


def _too_large(
    file: FileSpec, subject: str, size: int, lead: str, *, data_uri: bool = False
) -> FileProblem:
    hint = " Pass a URL instead of a data URI for large files." if data_uri else ""
    return FileProblem(
        "file_too_large",
        f"{lead}; the {file.kind} may be at most {file.max_bytes} bytes "
        f"({file.max_bytes // (1024 * 1024)} MiB).{hint}",
        {"max_bytes": file.max_bytes, "size_bytes": size},
    )


def _content_problem(
    file: FileSpec, declared: str, source: ByteSource, subject: str
) -> FileProblem | None:
    """Sniffed type and (for MP4s) duration of bytes whose declared type `file` accepts."""
    allowed = list(file.media_types)
    sniffed = sniff(source.read(0, SNIFF_BYTES))
    if sniffed not in file.media_types:
        if sniffed is None:
            return FileProblem(
                "media_type_mismatch",
                f"{subject} declares {declared} but its bytes are not a recognisable "
                f"{file.kind} (accepted: {', '.join(allowed)}).",
                {"declared": declared, "detected": None, "allowed": allowed},
            )
        return FileProblem(
            "unsupported_media_type",
            f"{subject} declares {declared} but its bytes are {sniffed}; accepted: "
            f"{', '.join(allowed)}.",
            {"declared": declared, "detected": sniffed, "allowed": allowed},
        )
    if file.max_duration_s is not None and sniffed in ("video/mp4", "video/quicktime"):
        duration_s = mp4_duration_s(source)
        if duration_s is not None and duration_s > file.max_duration_s + VIDEO_DURATION_SLACK_S:
            return FileProblem(
                "video_duration_too_long",
                f"{subject} is {duration_s:.2f} s long; at most {file.max_duration_s:g} s is "
                "accepted.",
                {"max_duration_s": file.max_duration_s, "duration_s": round(duration_s, 3)},
            )
    return None


def _base64_error(value: str, start: int, length: int) -> str | None:
    """Why `value[start:]` is not strict standard base64, or None; never decodes it."""
    if not value.isascii():
        return "non-ASCII characters"
    if length % 4:
        return "length is not a multiple of 4"
    # Delete every alphabet byte; what survives must be exactly the header's own non-alphabet
    # characters. One C pass over the whole URI, no slice copy and no decoding.
    raw = value.encode("ascii")
    if raw.translate(None, _B64_ALPHABET) != raw[:start].translate(None, _B64_ALPHABET):
        return "characters outside A-Z, a-z, 0-9, +, /"
    first_pad = value.find("=", start)
    if first_pad != -1 and (
        first_pad < len(value) - 2 or (first_pad == len(value) - 2 and value[-1] != "=")
    ):
        return "'=' padding inside the data"
    return None


def _find_box(source: ByteSource, pos: int, end: int, wanted: bytes) -> tuple[int, int] | None:
    """(body start, body end) of the first box of type `wanted` in [pos, end)."""
    for _ in range(_MAX_MP4_BOXES):
        if pos + 8 > end:
            return None
        header = source.read(pos, 16)
        size, kind, header_len = int.from_bytes(header[0:4]), header[4:8], 8
        if size == 1 and len(header) == 16:
            size, header_len = int.from_bytes(header[8:16]), 16
        elif size == 0:
            size = end - pos
        if size < header_len:
            return None
        if kind == wanted:
            return pos + header_len, min(pos + size, end)
        pos += size
    return None
