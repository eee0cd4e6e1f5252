"""Spend control against the simulator: a simulator of its own whose requests take long enough
to overlap, a proxy in front of it that counts what fal holds of ours, and a stack (API +
worker) per test on its own slice of the session's Redis."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.app import create_app
from service.dev.localredis import free_port
from service.dev.simulator import SimulatorConfig
from service.dev.simulator import create_app as create_simulator_app
from service.settings import Settings
from tests.conftest import SIMULATOR_SIGNING_SEED, TENANT_A_KEY, bearer
from tests.support.isolation import isolated
from tests.support.servers import ServerThread
from tests.support.workerthread import WorkerThread

HELD = ("IN_QUEUE", "IN_PROGRESS")


@dataclass
class HeldCounter:
    """A proxy in front of the simulator that counts, over HTTP, how many of our requests fal
    holds (IN_QUEUE or IN_PROGRESS) each time a new submit arrives.

    Submit answers are rewritten to name the proxy, so status, result and cancel calls come
    through it too. `revoked`: answer 401 to everything, as fal does for a revoked key.
    """

    upstream: str
    url: str = ""
    revoked: bool = False
    submits: list[tuple[str, bytes, str | None, int]] = field(default_factory=list)
    requests: dict[str, str] = field(default_factory=dict)  # request id -> status URL upstream
    finished: set[str] = field(default_factory=set)
    max_held: int = 0
    held_at_submit: list[int] = field(default_factory=list)
    # For each accepted submit: the bodies of every request fal held then, its own included.
    held_bodies: list[list[bytes]] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Scripted answers for the next submits: (status, body, headers), never forwarded.
    refusals: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    submit_times: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submits_containing(self, marker: str) -> list[tuple[str, bytes, str | None, int]]:
        with self._lock:
            return [s for s in self.submits if marker.encode() in s[1]]

    def calls_to(self, fragment: str, method: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return [c for c in self.calls if fragment in c[1] and method in (None, c[0])]

    def max_held_containing(self, marker: str) -> int:
        with self._lock:
            return max(
                (sum(marker.encode() in body for body in held) for held in self.held_bodies),
                default=0,
            )

    async def _held(self, client: httpx.AsyncClient, auth: str) -> list[str]:
        with self._lock:
            pending = [(rid, url) for rid, url in self.requests.items() if rid not in self.finished]
        held = []
        for request_id, status_url in pending:
            answer = await client.get(status_url, headers={"Authorization": auth})
            assert answer.status_code in (200, 202), answer.text
            if answer.json().get("status") in HELD:
                held.append(request_id)
            else:
                with self._lock:
                    self.finished.add(request_id)
        return held

    def app(self) -> Starlette:
        client = httpx.AsyncClient(timeout=30.0)
        submit_lock = asyncio_lock()

        async def forward(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            is_submit = request.method == "POST" and "/requests/" not in path
            if self.revoked:
                if is_submit:
                    with self._lock:
                        self.submit_times.append(time.monotonic())
                        self.submits.append(
                            (path, body, request.query_params.get("fal_webhook"), 401)
                        )
                return Response(
                    json.dumps({"detail": "Invalid key credentials"}), 401,
                    media_type="application/json",
                )  # fmt: skip
            if not is_submit:
                with self._lock:
                    self.calls.append((request.method, path))
            else:
                with self._lock:
                    refusal = self.refusals.pop(0) if self.refusals else None
                if refusal is not None:
                    status, answer, extra = refusal
                    with self._lock:
                        self.submit_times.append(time.monotonic())
                        self.submits.append((path, body, None, status))
                    return Response(
                        json.dumps(answer), status, headers=extra, media_type="application/json"
                    )
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            }
            async with submit_lock if is_submit else contextlib.nullcontext():
                # Submits one at a time: what fal holds is counted just before each is sent.
                held: list[str] = []
                if is_submit:
                    held = await self._held(client, request.headers.get("authorization", ""))
                upstream = await client.request(
                    request.method, f"{self.upstream}{path}",
                    params=list(request.query_params.multi_items()), content=body, headers=headers,
                )  # fmt: skip
                content = upstream.content
                if is_submit:
                    with self._lock:
                        self.submit_times.append(time.monotonic())
                        self.submits.append(
                            (
                                path,
                                body,
                                request.query_params.get("fal_webhook"),
                                upstream.status_code,
                            )
                        )
                    if upstream.is_success:
                        receipt = upstream.json()
                        request_id = receipt["request_id"]
                        with self._lock:
                            self.requests[request_id] = receipt["status_url"]
                            self.bodies[request_id] = body
                            self.held_at_submit.append(len(held) + 1)
                            self.held_bodies.append([self.bodies[r] for r in [*held, request_id]])
                            self.max_held = max(self.max_held, len(held) + 1)
                        content = content.replace(self.upstream.encode(), self.url.encode())
            return Response(
                content, upstream.status_code, media_type=upstream.headers.get("content-type")
            )

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> Any:
            yield
            await client.aclose()

        return Starlette(
            routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PUT", "DELETE"])],
            lifespan=lifespan,
        )


def asyncio_lock() -> Any:
    import asyncio

    return asyncio.Lock()


@pytest.fixture(scope="module")
def slow_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Requests that run ~0.4 s, more at once than any budget here, signed as the session's."""
    port = free_port()
    config = SimulatorConfig(
        host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}", delay_s=0.4,
        signing_keys=SIMULATOR_SIGNING_SEED, webhook_time_scale=0.0005, concurrency=20,
        data_dir=tmp_path_factory.mktemp("budget-sim"),
    )  # fmt: skip
    with ServerThread(create_simulator_app(config), port=port) as server:
        yield server


@pytest.fixture
def counter(slow_simulator: ServerThread) -> Iterator[HeldCounter]:
    proxy = HeldCounter(upstream=slow_simulator.url)
    with ServerThread(proxy.app()) as server:
        proxy.url = server.url
        yield proxy


def budget_settings(settings: Settings, counter: HeldCounter, **changes: Any) -> Settings:
    """The session's settings on a slice of their own, talking to fal through `counter`."""
    port = free_port()
    values: dict[str, Any] = {
        "port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "fal_queue_base_url": counter.url,
        "fal_platform_base_url": f"{counter.url}/v1",
        "fal_pause_probe_s": 0.3,
        "media_mirror": False,
        **changes,
    }
    return isolated(settings, **values).model_copy(update={"port": port})


@contextlib.contextmanager
def stack(config: Settings, *, worker: bool = True) -> Iterator[httpx.Client]:
    """The API (and a worker thread) on `config`; yields a client with tenant A's key."""
    with ServerThread(create_app(config), port=config.port) as api:
        thread = WorkerThread(config).start() if worker else None
        try:
            with httpx.Client(base_url=api.url, headers=bearer(TENANT_A_KEY), timeout=15) as http:
                yield http
        finally:
            if thread is not None:
                thread.stop()


def leases(config: Settings) -> int:
    with Redis.from_url(config.redis_url) as redis:
        return int(redis.zcard(f"{config.redis_key_prefix}inflight"))


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
