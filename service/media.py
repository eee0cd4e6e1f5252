"""Where vidhook keeps files: an S3 bucket (any S3 API: AWS, MinIO, R2…) or a local folder.

`MediaStore` is the one interface uploads and mirroring use: `put` bytes already in memory
(`put_many` a batch of small objects, as keeping jobs' inputs writes them), `put_stream` an
async stream of chunks of unknown length (never held whole: memory follows the multipart part
size, not the file's), and `url` for a link fal and clients can fetch without credentials
(pre-signed, a configured public base URL, or a tokenised vidhook URL).

Every write is hashed as it goes; the S3 store also has the server verify each request's
SHA-256 (`ChecksumSHA256`) and compares the stored object's size afterwards.

Errors::

    MediaError            storing failed (the S3 API or the disk said no); worth retrying
     └── TooLarge         the stream went past `max_bytes`; retrying will not help
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from service.catalog import EndpointSpec
from service.fal_webhooks import WebhookTokens
from service.files import decode_data_uri, extension_for
from service.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

_T = TypeVar("_T")

# Objects a batch writes to S3 at once (a PUT takes tens of milliseconds: one at a time would
# not keep up with a busy dispatch).
S3_PUTS_AT_ONCE = 16
# S3's floor for every part but the last.
S3_MIN_PART_BYTES = 5 * 1024 * 1024
# SigV4 pre-signed URLs live at most 7 days.
S3_MAX_PRESIGN_S = 7 * 86_400
# Keys vidhook makes: `uploads/file_….jpg`, `jobs/job_…/video.mp4`. Anything else is refused
# before it becomes a path or an object name.
_KEY_RE = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9]+)?)+")


class MediaError(Exception):
    """A file could not be stored; the message says where it failed."""


class TooLarge(MediaError):
    """The stream was longer than the limit it was stored under."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str
    content_type: str


class MediaStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store `data` under `key`, replacing what was there."""
        ...

    async def put_many(
        self, objects: Mapping[str, bytes], content_type: str
    ) -> dict[str, StoredObject | MediaError]:
        """Store each of `objects` (key: data) as `put` would; each key's outcome, not raised."""
        ...

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, *, max_bytes: int
    ) -> StoredObject:
        """Store a stream under `key`; raises TooLarge past `max_bytes`, MediaError."""
        ...

    async def url(self, key: str, *, expires_s: int) -> str:
        """A URL anyone holding it can GET the object from for `expires_s`."""
        ...

    async def read(self, key: str) -> bytes:
        """The object's bytes, whole: for small objects only (a job's kept input)."""
        ...


@contextlib.asynccontextmanager
async def open_media_store(settings: Settings) -> AsyncIterator[MediaStore]:
    """The store `settings` name, with its connections, for the life of a process."""
    if not settings.media_s3_bucket:
        yield LocalMediaStore(
            settings.media_local_dir.resolve(),
            base_url=settings.api_base_url,
            tokens=settings.media_tokens,
        )
        return
    session = aioboto3.Session()  # credentials and region from the standard AWS environment
    config = AioConfig(
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=50,
    )
    endpoint = str(settings.s3_endpoint_url) if settings.s3_endpoint_url else None
    async with session.client("s3", endpoint_url=endpoint, config=config) as client:
        public = settings.media_public_base_url
        yield S3MediaStore(
            client,
            settings.media_s3_bucket,
            prefix=settings.media_s3_prefix,
            part_bytes=settings.media_part_bytes,
            public_base_url=str(public) if public else None,
        )


async def store_large_data_uris(
    spec: EndpointSpec | None,
    fal_input: dict[str, Any],
    store: MediaStore,
    *,
    min_bytes: int,
    expires_s: int,
) -> dict[str, Any]:
    """`fal_input` with every data URI of at least `min_bytes` (decoded) replaced by a URL.

    The data URIs have passed validation. fal then downloads the file once instead of
    receiving megabytes of base64 in the submit, and the job record stays small.
    Raises MediaError.
    """
    if spec is None or min_bytes <= 0:
        return fal_input

    async def replace(value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith("data:")):
            return value
        if (len(value) - value.find(",") - 1) * 3 // 4 < min_bytes:
            return value
        media_type, data = decode_data_uri(value)
        key = f"uploads/file_{uuid.uuid4().hex}{extension_for(media_type)}"
        await store.put(key, data, media_type)
        return await store.url(key, expires_s=expires_s)

    replaced = dict(fal_input)
    for name, value in fal_input.items():
        field = spec.field_map.get(name)
        if field is None or field.file is None:
            continue
        if isinstance(value, list):
            replaced[name] = [await replace(item) for item in value]
        else:
            replaced[name] = await replace(value)
    return replaced


def check_key(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"not a media key vidhook makes: {key!r}")
    return key


class S3MediaStore:
    """Objects in `bucket` under `prefix`, written with single PUTs or multipart uploads."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        prefix: str = "",
        part_bytes: int = 8 * 1024 * 1024,
        public_base_url: str | None = None,
    ) -> None:
        if part_bytes < S3_MIN_PART_BYTES:
            raise ValueError(f"S3 parts must be at least {S3_MIN_PART_BYTES} bytes")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_bytes = part_bytes
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        digest = hashlib.sha256(data).digest()
        await self._call(
            "put",
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.object_key(key),
                Body=data,
                ContentType=content_type,
                ChecksumSHA256=_b64(digest),
                Metadata={"sha256": digest.hex()},
            ),
        )
        return StoredObject(key, len(data), digest.hex(), content_type)

    async def put_many(
        self, objects: Mapping[str, bytes], content_type: str
    ) -> dict[str, StoredObject | MediaError]:
        gate = asyncio.Semaphore(S3_PUTS_AT_ONCE)

        async def put_one(key: str, data: bytes) -> StoredObject | MediaError:
            async with gate:
                try:
                    return await self.put(key, data, content_type)
                except MediaError as exc:
                    return exc

        outcomes = await asyncio.gather(*(put_one(key, data) for key, data in objects.items()))
        return dict(zip(objects, outcomes, strict=True))

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, *, max_bytes: int
    ) -> StoredObject:
        whole = hashlib.sha256()
        size = 0
        # Chunks of the part being gathered, joined once when they reach a part's size: a part
        # is then at most part_bytes plus one chunk (S3 only asks that parts but the last be
        # at least 5 MiB), and no part is ever sliced out of a larger buffer.
        pending: list[bytes] = []
        pending_bytes = 0
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        object_key = self.object_key(key)
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"{key} is larger than {max_bytes} bytes")
                whole.update(chunk)
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= self.part_bytes:
                    if upload_id is None:
                        upload_id = await self._start_multipart(object_key, content_type)
                    part = b"".join(pending)
                    pending.clear()
                    pending_bytes = 0
                    parts.append(await self._upload_part(object_key, upload_id, parts, part))
                    del part
            if upload_id is None:
                # Small enough for one request: no multipart bookkeeping.
                return await self.put(key, b"".join(pending), content_type)
            if pending:
                last = b"".join(pending)
                pending.clear()
                parts.append(await self._upload_part(object_key, upload_id, parts, last))
            await self._call(
                "complete multipart upload of",
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
            upload_id = None
        except BaseException:
            if upload_id is not None:
                # Parts of an abandoned upload are billed until aborted; never leave them.
                with contextlib.suppress(Exception):
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=object_key, UploadId=upload_id
                    )
            raise
        head = await self._call(
            "check", self._client.head_object(Bucket=self.bucket, Key=object_key)
        )
        if head["ContentLength"] != size:
            raise MediaError(f"{key}: stored {head['ContentLength']} bytes of {size}")
        return StoredObject(key, size, whole.hexdigest(), content_type)

    async def url(self, key: str, *, expires_s: int) -> str:
        object_key = self.object_key(key)
        if self._public_base_url:
            return f"{self._public_base_url}/{quote(object_key)}"
        return await self._call(
            "pre-sign a URL in",
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": object_key},
                ExpiresIn=min(expires_s, S3_MAX_PRESIGN_S),
            ),
        )

    async def read(self, key: str) -> bytes:
        """The object's bytes (kept inputs, tests; mirroring never reads back whole objects)."""
        response = await self._call(
            "read", self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        )
        async with response["Body"] as body:
            return await body.read()

    async def _start_multipart(self, object_key: str, content_type: str) -> str:
        created = await self._call(
            "start multipart upload of",
            self._client.create_multipart_upload(
                Bucket=self.bucket,
                Key=object_key,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
            ),
        )
        return created["UploadId"]

    async def _upload_part(
        self, object_key: str, upload_id: str, done: list[CompletedPartTypeDef], data: bytes
    ) -> CompletedPartTypeDef:
        number = len(done) + 1
        checksum = _b64(hashlib.sha256(data).digest())
        answer = await self._call(
            f"upload part {number} of",
            self._client.upload_part(
                Bucket=self.bucket,
                Key=object_key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=checksum,
            ),
        )
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    async def _call(self, what: str, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except (BotoCoreError, ClientError) as exc:
            raise MediaError(f"S3 could not {what} s3://{self.bucket}: {exc}") from exc


class LocalMediaStore:
    """Files in a local folder, served by vidhook at tokenised URLs (`/v1/media/{key}`).

    For development and single-host use: the token is an HMAC of the key and its expiry, so a
    URL can be handed to fal without any account, and stops working when it expires.
    """

    def __init__(self, root: Path, *, base_url: str, tokens: WebhookTokens) -> None:
        self.root = root
        self._base_url = base_url.rstrip("/")
        self._tokens = tokens

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        stored = (await self.put_many({key: data}, content_type))[key]
        if isinstance(stored, MediaError):
            raise stored
        return stored

    async def put_many(
        self, objects: Mapping[str, bytes], content_type: str
    ) -> dict[str, StoredObject | MediaError]:
        # One trip to the thread pool for the batch: a small file's write costs less than the
        # hand-off to a thread and back.
        paths = {key: str(self.path(key)) for key in objects}
        return await asyncio.to_thread(self._write_many, paths, objects, content_type)

    @classmethod
    def _write_many(
        cls, paths: Mapping[str, str], objects: Mapping[str, bytes], content_type: str
    ) -> dict[str, StoredObject | MediaError]:
        outcomes: dict[str, StoredObject | MediaError] = {}
        for key, data in objects.items():
            try:
                cls._write(paths[key], data)
            except MediaError as exc:
                outcomes[key] = exc
                continue
            outcomes[key] = StoredObject(
                key, len(data), hashlib.sha256(data).hexdigest(), content_type
            )
        return outcomes

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, *, max_bytes: int
    ) -> StoredObject:
        target = self.path(key)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"{key} is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            # Readers see the whole file or none of it.
            await asyncio.to_thread(os.replace, partial, target)
        except OSError as exc:
            raise MediaError(f"could not write {target}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return StoredObject(key, size, digest.hexdigest(), content_type)

    async def url(self, key: str, *, expires_s: int) -> str:
        expires = int(time.time()) + expires_s
        token = self._tokens.token(f"{check_key(key)}\n{expires}")
        return f"{self._base_url}/v1/media/{key}?expires={expires}&token={token}"

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except OSError as exc:
            raise MediaError(f"could not read {key}: {exc}") from exc

    def open_path(self, key: str, expires: str, token: str) -> Path | None:
        """The file a tokenised URL names, or None when the URL is forged, expired or gone."""
        if not _KEY_RE.fullmatch(key) or not expires.isdigit():
            return None
        if not self._tokens.matches(f"{key}\n{expires}", token) or int(expires) < time.time():
            return None
        path = self.path(key)
        return path if path.is_file() else None

    @staticmethod
    def _write(target: str, data: bytes) -> None:
        """Write `data` to `target` whole: readers see the old file or the new one, never part.

        Plain `os` calls rather than pathlib: a batch of inputs is thousands of small writes,
        and pathlib's objects cost more than the system calls.
        """
        folder, name = os.path.split(target)
        partial = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            try:
                fd = os.open(partial, flags, 0o644)
            except FileNotFoundError:  # the object's first file in its folder
                os.makedirs(folder, exist_ok=True)
                fd = os.open(partial, flags, 0o644)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(partial, target)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
                raise
        except OSError as exc:
            raise MediaError(f"could not write {target}: {exc}") from exc


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
