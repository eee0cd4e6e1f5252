"""Reading request bodies with a hard size limit, refusing early instead of buffering."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from service import plainjson
from service.errors import MalformedBody, PayloadTooLarge, UnsupportedMedia


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The raw body, or PayloadTooLarge as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {max_bytes}.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body exceeds the limit of {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body decoded as JSON; 415 for other media types, 400 for bytes that are not JSON.

    Strict UTF-8, and a parser overflow is a 400 too (see `service.plainjson`); what the
    value holds is checked by the validator.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMedia(f"Send the body as application/json, not {media_type}.")
    raw = await read_limited(request, max_bytes)
    try:
        return plainjson.loads(raw)
    except plainjson.NotJson as exc:
        raise malformed(exc) from exc


def malformed(exc: plainjson.NotJson) -> MalformedBody:
    """The 400 for bytes that are not readable JSON, with the body as the problem's path."""
    error: dict[str, Any] = {"path": [], "message": exc.message, "type": exc.type}
    if exc.offset is not None:
        error["ctx"] = {"offset": exc.offset}
    return MalformedBody(exc.message, errors=[error])
