"""The benchmark's counterpart to vidhook: client backend, file host, and a window on fal.

    .venv/bin/python -m bench.peer --port 8712 --proxy-port 8711 --upstream http://127.0.0.1:8100

One process, one event loop, so every timestamp it records is on one clock:

- **Client backend** (`--port`): `POST /callbacks/{anything}` records when each signed
  callback arrived (job id from its `webhook-id`); `GET /sample.jpg` serves the image the
  benchmark's jobs name as their input.
- **Counting proxy** (`--proxy-port`): a TCP proxy in front of the fal simulator that parses
  the HTTP/1.1 going through it, so the simulator stays untouched: every request (when it
  arrived, what it was, which client sent it) and every connection (when it opened and
  closed) is recorded from the outside.
- **fal's webhook sender, when asked** (`emit_webhooks`): the simulator renders real MP4s and
  cannot complete hundreds of jobs a second on two cores, so for the latency run this process
  plays the completing model: after each submit the simulator accepted, it POSTs fal's
  completion webhook to the submit's `fal_webhook` URL with the simulator's own signing code
  and key, and records when it sent it.

`GET /_peer/records` returns everything recorded; `POST /_peer/config` (JSON: `upstream`,
`emit_webhooks`, `webhook_delay_s`) changes the proxy's behaviour; `POST /_peer/reset`
forgets the records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.dev.simulator.signing import WebhookSigner
from service.dev.simulator.webhooks import WebhookSender

SAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "examples" / "sample.jpg"
USER_ID = "bench-user-0001"
RESULT_VIDEO_BYTES = 1_843_217


def ok_webhook_payload(request_id: str, video_url: str, size_bytes: int) -> dict[str, Any]:
    """fal's OK completion webhook for a finished Veo request, as the simulator sends it."""
    return {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": {
            "video": {
                "url": video_url,
                "content_type": "video/mp4",
                "file_name": video_url.rsplit("/", 1)[-1],
                "file_size": size_bytes,
            }
        },
    }


@dataclass
class Message:
    """One HTTP/1.1 message seen on the wire: its start line, headers and body."""

    start_line: str
    headers: dict[str, str]
    body: bytes
    head_complete_at: float


class StreamParser:
    """Splits one direction of an HTTP/1.1 connection into messages (Content-Length framing).

    Requests and responses from uvicorn, httpx and fal-client always carry Content-Length or
    no body; anything else (chunked) stops parsing for this connection, forwarding goes on.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._head: tuple[str, dict[str, str], float] | None = None
        self._need = 0
        self.broken = False

    def feed(self, data: bytes, now: float) -> list[Message]:
        if self.broken:
            return []
        self._buffer += data
        messages: list[Message] = []
        while True:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return messages
                lines = self._buffer[:end].decode("latin-1").split("\r\n")
                del self._buffer[: end + 4]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.broken = True
                    return messages
                self._head = (lines[0], headers, now)
                self._need = int(headers.get("content-length", "0") or "0")
            if len(self._buffer) < self._need:
                return messages
            start_line, headers, at = self._head
            body = bytes(self._buffer[: self._need])
            del self._buffer[: self._need]
            self._head = None
            messages.append(Message(start_line, headers, body, at))


@dataclass
class ProxyConfig:
    upstream_host: str
    upstream_port: int
    emit_webhooks: bool = False
    webhook_delay_s: float = 0.25


@dataclass
class Records:
    """Everything observed, as plain lists of JSON-able rows (times are `time.time()` s)."""

    connections: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    webhooks_sent: list[tuple[float, str]] = field(default_factory=list)
    callbacks: list[tuple[float, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": list(self.connections.values()),
            "requests": self.requests,
            "webhooks_sent": self.webhooks_sent,
            "callbacks": self.callbacks,
        }


class Peer:
    def __init__(self, config: ProxyConfig, signer: WebhookSigner) -> None:
        self.config = config
        self.records = Records()
        self._ids = itertools.count(1)
        self._signer = signer
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._sender: WebhookSender | None = None

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self._client = httpx.AsyncClient(timeout=15.0, limits=limits)
        self._sender = WebhookSender(self._client, self._signer, user_id=USER_ID, time_scale=0.0)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # --- the proxy -------------------------------------------------------------------------

    async def handle_connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        conn_id = next(self._ids)
        record: dict[str, Any] = {"id": conn_id, "opened": time.time(), "closed": None, "ua": ""}
        self.records.connections[conn_id] = record
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.config.upstream_host, self.config.upstream_port
            )
        except OSError:
            client_writer.close()
            record["closed"] = time.time()
            return
        pending: list[dict[str, Any]] = []
        to_upstream = StreamParser()
        to_client = StreamParser()

        def on_request(message: Message) -> None:
            method, target, _ = [*message.start_line.split(" "), "", ""][:3]
            path, _, query = target.partition("?")
            ua = message.headers.get("user-agent", "")
            record["ua"] = record["ua"] or ua
            row = {
                "t": message.head_complete_at,
                "conn": conn_id,
                "method": method,
                "path": path,
                "ua": ua,
                "kind": request_kind(method, path),
                "webhook": urllib.parse.parse_qs(query).get("fal_webhook", [None])[0],
                "status": None,
                "t_done": None,
            }
            self.records.requests.append(row)
            pending.append(row)

        def on_response(message: Message) -> None:
            if not pending:
                return
            row = pending.pop(0)
            row["status"] = int(message.start_line.split(" ")[1])
            row["t_done"] = time.time()
            if row["kind"] == "submit" and row["webhook"] and 200 <= row["status"] < 300:
                with contextlib.suppress(ValueError, KeyError):
                    row["request_id"] = json.loads(message.body)["request_id"]
                    if self.config.emit_webhooks:
                        self._spawn(self._emit(row["webhook"], row["request_id"]))

        async def pump(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            parser: StreamParser,
            handle: Any,
        ) -> None:
            try:
                while data := await reader.read(65536):
                    now = time.time()
                    writer.write(data)
                    for message in parser.feed(data, now):
                        handle(message)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        await asyncio.gather(
            pump(client_reader, upstream_writer, to_upstream, on_request),
            pump(upstream_reader, client_writer, to_client, on_response),
        )
        record["closed"] = time.time()

    # --- fal's completion, when emitting ---------------------------------------------------

    async def _emit(self, webhook_url: str, request_id: str) -> None:
        await asyncio.sleep(self.config.webhook_delay_s)
        assert self._sender is not None
        job_id = urllib.parse.urlsplit(webhook_url).path.rsplit("/", 1)[-1]
        name = f"{secrets.token_urlsafe(15)}_output.mp4"
        upstream = f"http://{self.config.upstream_host}:{self.config.upstream_port}"
        payload = ok_webhook_payload(request_id, f"{upstream}/files/{name}", RESULT_VIDEO_BYTES)
        self.records.webhooks_sent.append((time.time(), job_id))
        await self._sender.deliver(webhook_url, request_id, payload)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the client backend and control ----------------------------------------------------

    def app(self) -> Starlette:
        image = SAMPLE_IMAGE.read_bytes()

        async def callback(request: Request) -> Response:
            await request.body()
            message_id = request.headers.get("webhook-id", "")
            # msg_{job id}_{status}: the job id without parsing the body.
            job_id = message_id.removeprefix("msg_").rsplit("_", 1)[0]
            self.records.callbacks.append((time.time(), job_id))
            return Response(status_code=204)

        async def sample(request: Request) -> Response:
            return Response(image, media_type="image/jpeg")

        async def records(request: Request) -> Response:
            return JSONResponse(self.records.as_json())

        async def reset(request: Request) -> Response:
            self.records = Records()
            return JSONResponse({"reset": True})

        async def configure(request: Request) -> Response:
            changes = await request.json()
            if "upstream" in changes:
                parts = urllib.parse.urlsplit(changes["upstream"])
                self.config.upstream_host = parts.hostname or "127.0.0.1"
                self.config.upstream_port = parts.port or 80
            if "emit_webhooks" in changes:
                self.config.emit_webhooks = bool(changes["emit_webhooks"])
            if "webhook_delay_s" in changes:
                self.config.webhook_delay_s = float(changes["webhook_delay_s"])
            return JSONResponse({"ok": True})

        async def health(request: Request) -> Response:
            return JSONResponse({"ok": True})

        return Starlette(
            routes=[
                Route("/callbacks/{rest:path}", callback, methods=["POST"]),
                Route("/sample.jpg", sample, methods=["GET"]),
                Route("/_peer/records", records, methods=["GET"]),
                Route("/_peer/reset", reset, methods=["POST"]),
                Route("/_peer/config", configure, methods=["POST"]),
                Route("/_peer/health", health, methods=["GET"]),
            ]
        )


def request_kind(method: str, path: str) -> str:
    """What a request to fal's queue API is: submit, status, result, cancel, jwks, file."""
    if path == "/.well-known/jwks.json":
        return "jwks"
    if path.startswith("/files/"):
        return "file"
    if "/requests/" in path:
        if path.endswith("/status"):
            return "status"
        if path.endswith("/cancel"):
            return "cancel"
        return "result"
    return "submit" if method == "POST" else "other"


async def serve(port: int, proxy_port: int, upstream: str, seed_hex: str) -> None:
    parts = urllib.parse.urlsplit(upstream)
    peer = Peer(
        ProxyConfig(parts.hostname or "127.0.0.1", parts.port or 80), WebhookSigner([seed_hex])
    )
    await peer.start()
    proxy = await asyncio.start_server(peer.handle_connection, "127.0.0.1", proxy_port)

    server = uvicorn.Server(
        uvicorn.Config(
            peer.app(),
            host="127.0.0.1",
            port=port,
            loop="none",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    try:
        await server.serve()
    finally:
        proxy.close()
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fal simulator's base URL")
    parser.add_argument("--seed", required=True, help="the simulator's signing seed (hex)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import uvloop

    uvloop.run(serve(args.port, args.proxy_port, args.upstream, args.seed))


if __name__ == "__main__":
    main()
