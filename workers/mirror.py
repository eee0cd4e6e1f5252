"""mirror_job: copy a completed job's output files from fal into vidhook's media store.

fal keeps outputs on its CDN for a limited time; the client is told its video is ready only
once a copy is in our store. Each file is streamed from fal's URL into the store (an S3
multipart upload, or a local file) with its SHA-256 computed on the way; at most one part
is ever in memory. The copies are recorded as the job's `assets`, and the callback is
enqueued in the same atomic step.

Retries back off up to MIRROR_MAX_TRIES; after that the job keeps fal's URLs, records
`mirror: {"status": "failed"}`, and the callback goes anyway: the client is never left waiting
forever. The delivery's first attempt has a fixed task id and its due mark is added only if
absent, so however often this runs the job.completed delivery starts once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from arq import Retry

from service import deliveries
from service.files import SNIFF_BYTES, extension_for, normalise_media_type, sniff
from service.jobs import JobStatus
from service.media import MediaError, MediaStore, TooLarge
from service.ssrf import UnsafeTarget, parse_target, resolve_public_addresses
from workers.context import WorkerContext, worker_context

logger = logging.getLogger("vidhook.mirror")

MAX_REDIRECTS = 3
# Nested File objects deeper than this are not outputs fal documents for any model.
_MAX_DEPTH = 4
_DOWNLOAD_CHUNK_BYTES = 256 * 1024
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class MirrorFailed(Exception):
    """A file could not be copied; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A fal `File` object found in a result: where it was (`kind`) and its fields."""

    kind: str
    url: str
    content_type: str | None
    size_bytes: int | None


def output_files(result: Any) -> list[OutputFile]:
    """Every fal File object (a dict with an http(s) `url`) in `result`, named by its path.

    `{"video": {...}}` gives kind `video`; `{"images": [{...}, {...}]}` gives `images_0`,
    `images_1`.
    """
    found: list[OutputFile] = []

    def walk(value: Any, path: list[str], depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, dict):
            url = value.get("url")
            if path and isinstance(url, str) and url.lower().startswith(("http://", "https://")):
                content_type = value.get("content_type")
                size = value.get("file_size")
                found.append(
                    OutputFile(
                        kind=_UNSAFE_KEY_CHARS.sub("_", "_".join(path))[:64],
                        url=url,
                        content_type=content_type if isinstance(content_type, str) else None,
                        size_bytes=size if type(size) is int else None,
                    )
                )
                return
            for key, item in value.items():
                walk(item, [*path, str(key)], depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, [*path, str(index)], depth + 1)

    walk(result, [], 0)
    return found


async def mirror_job(ctx: dict[str, Any], job_id: str) -> str:
    """Copy the job's output files, record them, then enqueue its callback; Retry on failure."""
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    job = await w.store.get(job_id)
    if job is None or job.status is not JobStatus.COMPLETED:
        return "nothing to mirror"
    if job.mirror is not None and job.mirror.get("status") != "pending":
        # Recorded by an earlier run; enqueuing again is a no-op if its callback is queued.
        await _record(w, job_id, {})
        return f"already {job.mirror.get('status')}"
    files = output_files(job.result)
    if not files:
        await _record(w, job_id, {"mirror": json.dumps({"status": "skipped"})})
        return "no files"
    if job_try > w.settings.mirror_max_tries:
        # ARQ's spare try (max_tries is one above ours): every try of ours ran out of time
        # without reaching the failure path below, so give up here, and still notify.
        last_error = (job.mirror or {}).get("error") or "timed out"
        state = {"status": "failed", "error": last_error, "attempts": job_try - 1}
        await _record(w, job_id, {"mirror": json.dumps(state)})
        return "gave up"
    timeout_s = w.settings.mirror_timeout_s
    try:
        # Our own deadline, inside ARQ's: a timeout ARQ enforces fails the task for good,
        # with no retry and no callback.
        async with asyncio.timeout(timeout_s):
            assets = [await _mirror_file(w, w.media, job_id, file) for file in files]
    except Exception as exc:
        # Whatever broke the copy (an upstream, the store, or a bug here), the job is done at
        # fal: retry, and in the end announce it without copies rather than never.
        if isinstance(exc, TimeoutError):
            exc = MirrorFailed(f"the copy took longer than {timeout_s} s")
        elif not isinstance(exc, MirrorFailed):
            logger.exception("unexpected error mirroring %s", job_id)
            exc = MirrorFailed(f"{type(exc).__name__}: {exc}")
        gave_up = exc.permanent or job_try >= w.settings.mirror_max_tries
        state = {
            "status": "failed" if gave_up else "pending",
            "error": str(exc),
            "attempts": job_try,
        }
        logger.warning("mirroring %s failed (try %d): %s", job_id, job_try, exc)
        if gave_up:
            # fal's URLs stay in `result`; the client hears of the job now rather than never.
            await _record(w, job_id, {"mirror": json.dumps(state)})
            return "gave up"
        await w.store.update_fields(job_id, {"mirror": json.dumps(state)})
        raise Retry(defer=w.backoff_s(job_try)) from exc
    await _record(
        w,
        job_id,
        {
            "assets": json.dumps(assets, separators=(",", ":")),
            "mirror": json.dumps({"status": "mirrored", "attempts": job_try}),
        },
    )
    return f"mirrored {len(assets)} file(s)"


async def _record(w: WorkerContext, job_id: str, fields: dict[str, str]) -> None:
    """Write the mirror's outcome and start the callback delivery (if any) in one atomic step.

    The job is completed, a terminal status: writing fields cannot race a status change.
    """
    delivery = deliveries.first_attempt(w.store.keys, job_id, JobStatus.COMPLETED)
    await w.store.update_fields(job_id, fields, follow_ups=[delivery] if delivery else [])


async def _mirror_file(
    w: WorkerContext, media: MediaStore, job_id: str, file: OutputFile
) -> dict[str, Any]:
    max_bytes = w.settings.media_max_bytes
    if file.size_bytes is not None and file.size_bytes > max_bytes:
        raise MirrorFailed(
            f"{file.kind} is {file.size_bytes} bytes, over {max_bytes}", permanent=True
        )
    response = await _open_source(w, file.url)
    try:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise MirrorFailed(f"{file.kind} is {declared} bytes, over {max_bytes}", permanent=True)
        chunks = response.aiter_bytes(_DOWNLOAD_CHUNK_BYTES)
        head = await _first_bytes(chunks)
        content_type = _content_type(file, response, head)
        key = f"jobs/{job_id}/{file.kind}{extension_for(content_type) or _url_extension(file.url)}"
        try:
            stored = await media.put_stream(
                key, _prepend(head, chunks), content_type, max_bytes=max_bytes
            )
        except TooLarge as exc:
            raise MirrorFailed(str(exc), permanent=True) from exc
        except MediaError as exc:
            raise MirrorFailed(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise MirrorFailed(f"download of {file.kind} broke off: {exc!r}") from exc
    finally:
        await response.aclose()
    if file.size_bytes is not None and stored.size_bytes != file.size_bytes:
        raise MirrorFailed(
            f"{file.kind}: fal said {file.size_bytes} bytes, received {stored.size_bytes}"
        )
    return {
        "kind": file.kind,
        "source_url": file.url,
        "url": await media.url(key, expires_s=w.settings.media_url_ttl_s),
        "key": key,
        "bytes": stored.size_bytes,
        "sha256": stored.sha256,
        "content_type": content_type,
    }


async def _open_source(w: WorkerContext, url: str) -> httpx.Response:
    """GET `url` as a stream, following a few redirects, each hop checked like a callback's.

    The URL comes from fal's signed webhook or its result, but a redirect could still point
    anywhere: private addresses are refused unless MEDIA_ALLOW_PRIVATE_SOURCES (development).
    Unlike callbacks, the connection is not pinned to the checked address: the first hop is
    a URL fal signed for, and its CDN's names are not the client-chosen hosts that DNS
    rebinding needs.
    """
    allow_private = w.settings.media_allow_private_sources
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target = parse_target(url, allow_private_targets=allow_private)
            if not allow_private and target.literal is None:
                await resolve_public_addresses(target.host, target.port)
        except UnsafeTarget as exc:
            raise MirrorFailed(f"refused to download {url}: {exc}", permanent=True) from exc
        try:
            response = await w.http.send(w.http.build_request("GET", url), stream=True)
        except httpx.HTTPError as exc:
            raise MirrorFailed(f"could not download {url}: {exc!r}") from exc
        if response.is_redirect and "location" in response.headers:
            await response.aclose()
            url = urljoin(url, response.headers["location"])
            continue
        if response.status_code != 200:
            await response.aclose()
            # fal's CDN answering 404/410 means the file is gone: retrying cannot bring it back.
            permanent = response.status_code in (403, 404, 410)
            raise MirrorFailed(f"{url} answered {response.status_code}", permanent=permanent)
        return response
    raise MirrorFailed(f"more than {MAX_REDIRECTS} redirects from {url}", permanent=True)


async def _first_bytes(chunks: AsyncIterator[bytes]) -> bytes:
    """The first chunk (enough to sniff); b'' for an empty body."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return b""
    except httpx.HTTPError as exc:
        raise MirrorFailed(f"download broke off: {exc!r}") from exc


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


def _content_type(file: OutputFile, response: httpx.Response, head: bytes) -> str:
    """fal's declared type, else what the bytes are, else the CDN's header."""
    for candidate in (
        file.content_type,
        sniff(head[:SNIFF_BYTES]),
        response.headers.get("content-type"),
    ):
        if candidate:
            media_type = normalise_media_type(candidate)
            if media_type and media_type != "application/octet-stream":
                return media_type
    return "application/octet-stream"


def _url_extension(url: str) -> str:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    _, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and ext.isalnum() and len(ext) <= 5 else ""
