"""POST /v1/files (store an input image or video) and GET /v1/media/{key} (local store only).

Uploads get exactly the checks a data URI gets (service.files), then a URL fal can fetch
without credentials, to be used as any file input of a job.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Message

from service.auth import authenticate
from service.bodies import read_limited
from service.context import ApiContext
from service.errors import (
    ApiError,
    InvalidRequest,
    MalformedBody,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMedia,
)
from service.files import (
    UPLOAD_SPECS,
    FileProblem,
    extension_for,
    normalise_media_type,
    upload_problem,
)
from service.jobs import iso_from_ms
from service.media import LocalMediaStore, MediaError
from service.store import now_ms

# Room for multipart framing around the largest file accepted.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_MAX_BODY_BYTES = max(spec.max_bytes for spec in UPLOAD_SPECS) + _MULTIPART_OVERHEAD_BYTES
_SUBJECT = "The upload"

FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "url", "content_type", "bytes", "sha256", "expires_at"],
    "properties": {
        "id": {"type": "string", "examples": ["file_5d41402abc4b2a76b9719d911017c592"]},
        "object": {"const": "file"},
        "url": {"type": "string", "description": "Pass this as a job's file input."},
        "content_type": {"type": "string", "description": "What the bytes are (sniffed)."},
        "bytes": {"type": "integer"},
        "sha256": {"type": "string"},
        "expires_at": {"type": "string", "format": "date-time"},
    },
}


async def create_file(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    await authenticate(request)
    raw = await read_limited(request, UPLOAD_MAX_BODY_BYTES)
    media_type = normalise_media_type(request.headers.get("content-type", ""))
    if media_type == "multipart/form-data":
        data, declared = await _multipart_file(request, raw)
    else:
        data, declared = raw, media_type or None
    if not data:
        raise InvalidRequest(
            "The upload is empty.",
            [{"path": ["body"], "message": "Send the file's bytes.", "type": "missing"}],
        )
    checked = upload_problem(data, declared, _SUBJECT)
    if isinstance(checked, FileProblem):
        raise _refusal(checked)
    _, content_type = checked
    file_id = f"file_{uuid.uuid4().hex}"
    key = f"uploads/{file_id}{extension_for(content_type)}"
    ttl_s = ctx.settings.media_url_ttl_s
    try:
        stored = await ctx.media.put(key, data, content_type)
        url = await ctx.media.url(key, expires_s=ttl_s)
    except MediaError as exc:
        raise StorageUnavailable(str(exc)) from exc
    return JSONResponse(
        {
            "id": file_id,
            "object": "file",
            "url": url,
            "content_type": content_type,
            "bytes": stored.size_bytes,
            "sha256": stored.sha256,
            "expires_at": iso_from_ms(now_ms() + ttl_s * 1000),
        },
        status_code=201,
    )


async def get_local_media(request: Request) -> Response:
    """A file of the local media store, for the holder of its tokenised URL (fal, clients)."""
    ctx: ApiContext = request.app.state.ctx
    store = ctx.media
    path = (
        store.open_path(
            request.path_params["key"],
            request.query_params.get("expires", ""),
            request.query_params.get("token", ""),
        )
        if isinstance(store, LocalMediaStore)
        else None
    )
    if path is None:
        raise NotFound("No such file, or its URL has expired.")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


async def _multipart_file(request: Request, raw: bytes) -> tuple[bytes, str | None]:
    """The one file part of a multipart body already read (and size-checked) as `raw`."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=10) as form:
            upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
            if upload is None:
                raise InvalidRequest(
                    "The multipart body has no file part.",
                    [{"path": ["body", "file"], "message": "Add a file part.", "type": "missing"}],
                )
            data = await upload.read()
            declared = normalise_media_type(upload.content_type or "") or None
    except ApiError:
        raise
    except Exception as exc:  # the parser's own errors: multipart framing, too many parts
        raise MalformedBody(f"The multipart body cannot be read: {exc}") from exc
    return data, declared


def _refusal(problem: FileProblem) -> ApiError:
    item: dict[str, Any] = {"path": ["body"], "message": problem.msg, "type": problem.type}
    if problem.ctx:
        item["ctx"] = dict(problem.ctx)
    if problem.type == "file_too_large":
        return PayloadTooLarge(problem.msg, errors=[item])
    if problem.type in ("unsupported_media_type", "media_type_mismatch"):
        return UnsupportedMedia(problem.msg, errors=[item])
    return InvalidRequest(problem.msg, [item])
