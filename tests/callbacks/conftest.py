"""A real HTTP callback receiver for the delivery tests, and a shared signing secret."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import ServerThread

SECRET = "whsec_" + base64.b64encode(b"vidhook-test-secret-0123456789ab").decode()
HUGE_CHUNK = b"x" * 65536
HUGE_TOTAL_BYTES = 1 << 30  # 1 GiB: far more than a test could buffer without noticing


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    server: tuple[str, int] | None  # the local address the connection was accepted on


@dataclass
class Receiver:
    """A running receiver: its base URL, port and what it has seen."""

    url: str
    port: int
    requests: list[Received] = field(default_factory=list)
    huge_bytes_sent: list[int] = field(default_factory=lambda: [0])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]


def make_app(receiver: Receiver) -> Starlette:
    async def record(request: Request) -> None:
        body = await request.body()
        server = request.scope.get("server")
        with receiver.lock:
            receiver.requests.append(
                Received(
                    path=request.url.path,
                    headers={k.decode(): v.decode() for k, v in request.scope["headers"]},
                    body=body,
                    server=tuple(server) if server else None,
                )
            )

    async def hook(request: Request) -> Response:
        await record(request)
        return Response(status_code=204)

    async def status(request: Request) -> Response:
        await record(request)
        return Response(b"receiver says no", status_code=int(request.path_params["code"]))

    async def redirect(request: Request) -> Response:
        await record(request)
        return RedirectResponse("/hook", status_code=302)

    async def huge(request: Request) -> Response:
        await record(request)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(HUGE_TOTAL_BYTES // len(HUGE_CHUNK)):
                # uvicorn drops writes after a disconnect instead of failing them.
                if await request.is_disconnected():
                    return
                receiver.huge_bytes_sent[0] += len(HUGE_CHUNK)
                yield HUGE_CHUNK

        return StreamingResponse(body(), media_type="application/octet-stream")

    async def drip(request: Request) -> Response:
        await record(request)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(200):  # one byte per 50 ms: never trips a per-read timeout
                if await request.is_disconnected():
                    return
                yield b"."
                await asyncio.sleep(0.05)

        return StreamingResponse(body(), media_type="text/plain")

    async def slow(request: Request) -> Response:
        await record(request)
        for _ in range(250):  # at most 5 s; leaves as soon as the sender gives up
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.02)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/hook", hook, methods=["POST"]),
            Route("/status/{code:int}", status, methods=["POST"]),
            Route("/redirect", redirect, methods=["POST"]),
            Route("/huge", huge, methods=["POST"]),
            Route("/drip", drip, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def _receiver_server() -> Iterator[Receiver]:
    receiver = Receiver(url="", port=0)
    server = ServerThread(make_app(receiver))
    receiver.url, receiver.port = server.url, server.port
    with server:
        yield receiver


@pytest.fixture
def receiver(_receiver_server: Receiver) -> Receiver:
    """The module's receiver, with nothing recorded yet."""
    with _receiver_server.lock:
        _receiver_server.requests.clear()
        _receiver_server.huge_bytes_sent[0] = 0
    return _receiver_server


# What a scripted receiver answers, in turn, per path; past the script, 204.
Answer = int | tuple[int, str] | str  # a status, (status, Retry-After), "redirect" or "slow"


@dataclass
class ScriptedReceiver:
    """A real receiver whose answers each test scripts per path (`/s/{name}`)."""

    url: str = ""
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    seen: dict[str, list[tuple[float, dict[str, str], bytes]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, name: str, *answers: Answer) -> str:
        """Script `name`'s answers; returns its URL."""
        with self.lock:
            self.scripts[name] = list(answers)
            self.seen[name] = []
        return f"{self.url}/s/{name}"

    def requests(self, name: str) -> list[tuple[float, dict[str, str], bytes]]:
        """(monotonic arrival time, headers, raw body) of each request to `name`."""
        with self.lock:
            return list(self.seen.get(name, []))

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            name = request.path_params["name"]
            body = await request.body()
            with self.lock:
                self.seen.setdefault(name, []).append(
                    (time.monotonic(), dict(request.headers), body)
                )
                script = self.scripts.setdefault(name, [])
                answer: Answer = script.pop(0) if script else 204
            if answer == "redirect":
                return RedirectResponse(f"/s/{name}-redirected", status_code=302)
            if answer == "slow":
                for _ in range(150):  # 3 s at most; the sender gives up sooner
                    if await request.is_disconnected():
                        break
                    await asyncio.sleep(0.02)
                return Response(status_code=204)
            if isinstance(answer, tuple):
                status, retry_after = answer
                return Response(status_code=status, headers={"Retry-After": retry_after})
            assert isinstance(answer, int)
            return Response(b"scripted", status_code=answer)

        return Starlette(routes=[Route("/s/{name}", receive, methods=["POST"])])


@pytest.fixture(scope="module")
def scripted_receiver() -> Iterator[ScriptedReceiver]:
    receiver = ScriptedReceiver()
    with ServerThread(receiver.app()) as server:
        receiver.url = server.url
        yield receiver
