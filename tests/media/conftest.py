"""A real S3 API (moto's standalone server, over HTTP) and a vidhook system that uses it.

The S3 system is a second API and worker beside the session's own (which keeps the local
default): its own Redis key prefix and queue, so the two workers never take each other's
tasks. Test sources (flaky, huge) are served by a small real HTTP server.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aioboto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service.app import create_app
from service.dev.localredis import free_port
from service.jobs import Job, JobStatus
from service.keys import RedisKeys
from service.settings import Settings
from service.store import JobStore, now_ms
from tests.conftest import TENANT_A_KEY, bearer
from tests.support.servers import ServerThread
from tests.support.workerthread import WorkerThread

BUCKET = "vidhook-media-test"
PREFIX = "vidhook/"
T = TypeVar("T")


@pytest.fixture(scope="session")
def aws_environment() -> Iterator[dict[str, str]]:
    """Credentials as production reads them: the standard AWS environment variables."""
    values = {
        "AWS_ACCESS_KEY_ID": "vidhook-test",
        "AWS_SECRET_ACCESS_KEY": "vidhook-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        yield values


@pytest.fixture(scope="session")
def s3_server(aws_environment: dict[str, str]) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    run(_create_bucket(url))
    yield url
    server.stop()


async def _create_bucket(endpoint: str) -> None:
    async with aioboto3.Session().client("s3", endpoint_url=endpoint) as client:
        await client.create_bucket(Bucket=BUCKET)


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine from a sync test (each in a fresh loop, as the servers run elsewhere)."""

    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture(scope="session")
def s3_settings(settings: Settings, s3_server: str) -> Settings:
    values: dict[str, Any] = dict(settings)
    port = free_port()
    values.update(
        redis_key_prefix="s3:",
        arq_queue_name="s3:queue",
        port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        media_s3_bucket=BUCKET,
        media_s3_prefix=PREFIX,
        s3_endpoint_url=s3_server,
        media_part_bytes=5 * 1024 * 1024,
        mirror_max_tries=3,
        # Short, so the stalled-download test is quick; every other copy here takes far less.
        mirror_timeout_s=2.0,
    )
    return Settings(**values)


@pytest.fixture(scope="session")
def s3_system(s3_settings: Settings) -> Iterator[ServerThread]:
    worker = WorkerThread(s3_settings).start()
    with ServerThread(create_app(s3_settings), port=s3_settings.port) as api:
        yield api
    worker.stop()


@pytest.fixture
def s3_client(s3_system: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=s3_system.url, headers=bearer(TENANT_A_KEY), timeout=30) as http:
        yield http


async def object_digest(settings: Settings, key: str) -> tuple[int, str, str]:
    """(size, sha256, ETag) of a stored object, read back in chunks with a client of our own."""
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=str(settings.s3_endpoint_url)) as client:
        answer = await client.get_object(Bucket=BUCKET, Key=PREFIX + key)
        digest = hashlib.sha256()
        size = 0
        body = answer["Body"]
        try:
            async for chunk in body.iter_chunks(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return size, digest.hexdigest(), answer["ETag"]


def pseudo_random_block(seed: bytes, size: int) -> bytes:
    return b"".join(
        hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(-(-size // 32))
    )[:size]


@dataclass
class SourceServer:
    """Plays fal's CDN for mirror tests: named files, scripted failures, huge generated bodies."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, data: bytes, *, fail_with: tuple[int, ...] = ()) -> str:
        with self.lock:
            self.files[name] = data
            self.failures[name] = list(fail_with)
        return f"{self.url}/files/{name}"

    def app(self) -> Starlette:
        async def serve_file(request: Request) -> Response:
            name = request.path_params["name"]
            with self.lock:
                self.hits[name] = self.hits.get(name, 0) + 1
                failures = self.failures.get(name, [])
                status = failures.pop(0) if failures else None
                data = self.files.get(name)
            if status is not None:
                return Response(b"scripted failure", status_code=status)
            if data is None:
                return Response(b"no such file", status_code=404)
            return Response(data, media_type="application/octet-stream")

        async def serve_big(request: Request) -> Response:
            # Generated as it is sent, so neither this server nor the repo holds it.
            size = int(request.path_params["size"])
            return StreamingResponse(
                big_body(size), media_type="video/mp4", headers={"content-length": str(size)}
            )

        async def serve_drip(request: Request) -> Response:
            # Alive but far too slow: a byte every half second, never a read timeout.
            async def drip() -> AsyncIterator[bytes]:
                for _ in range(60):
                    yield b"\0"
                    await asyncio.sleep(0.5)

            return StreamingResponse(drip(), media_type="video/mp4")

        return Starlette(
            routes=[
                Route("/drip/{name}", serve_drip, methods=["GET"]),
                Route("/files/{name}", serve_file, methods=["GET"]),
                Route("/big/{size:int}.mp4", serve_big, methods=["GET"]),
            ]
        )


BIG_BLOCK_BYTES = 1 << 20
_BIG_BLOCK = pseudo_random_block(b"vidhook big mirror", BIG_BLOCK_BYTES)
# An MP4's first box, so the bytes sniff as video/mp4 like a real output.
_MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41"


async def big_body(size: int) -> AsyncIterator[bytes]:
    for chunk in big_chunks(size):
        yield chunk


def big_chunks(size: int) -> Iterator[bytes]:
    """`size` bytes: an MP4 head, then 1 MiB blocks each stamped with its index."""
    sent = 0
    index = 0
    while sent < size:
        block = (_MP4_HEAD if index == 0 else index.to_bytes(8, "big")) + _BIG_BLOCK
        block = block[: min(BIG_BLOCK_BYTES, size - sent)]
        sent += len(block)
        index += 1
        yield block


@pytest.fixture(scope="session")
def source_server() -> Iterator[SourceServer]:
    source = SourceServer()
    with ServerThread(source.app()) as server:
        source.url = server.url
        yield source


async def finished_by_fal(
    settings: Settings, result: Any, *, callback_url: str | None = None
) -> str:
    """A job that fal has just completed with `result`, recorded by the real completion step.

    The job is written as dispatch leaves it (in progress, no task queued), then finished
    with `finish_job`, which enqueues mirror_job exactly as the webhook receiver does.
    """
    from redis.asyncio import Redis

    from service.completions import FalOutcome, finish_job

    job_id = f"job_{os.urandom(16).hex()}"
    job = Job.queued(
        job_id,
        "tenant-a",
        "fal-ai/veo3.1/fast/image-to-video",
        {"prompt": "mirror test"},
        callback_url=callback_url,
        metadata=None,
        estimated_cost_usd=None,
        created_at_ms=now_ms(),
    )
    redis = Redis.from_url(settings.redis_url)
    try:
        store = JobStore(
            redis,
            RedisKeys(settings.redis_key_prefix, settings.arq_queue_name),
            job_retention_s=settings.job_retention_s,
        )
        fields = {**job.to_new_hash(), "status": JobStatus.IN_PROGRESS.value}
        await redis.hset(store.keys.job(job_id), mapping=fields)  # type: ignore[misc]
        outcome = FalOutcome(request_id=f"req-{job_id}", result=result)
        moved = await finish_job(store, job_id, outcome, source="test", mirror_outputs=True)
        assert moved.applied
    finally:
        await redis.aclose()
    return job_id


def wait_until(check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
