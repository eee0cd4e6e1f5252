"""Test-side tools: a webhook receiver, a small fal client, fal's documented verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

# A body bigger than fal's 8 MB image cap, starting like a PNG so only the size is wrong.
OVERSIZED_BYTES = 9 * 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A tiny HTTP peer: records webhook POSTs and serves test assets.

    `POST /hooks/{key}` records the delivery; `?fail=N` answers 500 to the first N deliveries,
    `?redirect=1` answers 307 to `/hooks/{key}-target`. `GET /assets/{name}` serves a file,
    `GET /slow/{name}?delay_s=S` the same after S seconds, `GET /oversized.png` a body over 8 MB.
    """

    def __init__(self, assets: Path) -> None:
        self.url = ""
        self._assets = assets
        self._lock = threading.Lock()
        self._hits: dict[str, list[Delivery]] = defaultdict(list)
        self.app = Starlette(
            routes=[
                Route("/hooks/{key}", self._hook, methods=["POST"]),
                Route("/assets/{name}", self._asset, methods=["GET"]),
                Route("/slow/{name}", self._slow_asset, methods=["GET"]),
                Route("/oversized.png", self._oversized, methods=["GET"]),
            ]
        )

    async def _hook(self, request: Request) -> Response:
        key = request.path_params["key"]
        delivery = Delivery(dict(request.headers), await request.body())
        with self._lock:
            self._hits[key].append(delivery)
            seen = len(self._hits[key])
        if request.query_params.get("redirect"):
            return Response(status_code=307, headers={"location": f"/hooks/{key}-target"})
        if seen <= int(request.query_params.get("fail", "0")):
            return Response("try again", status_code=500)
        return Response(status_code=200)

    async def _asset(self, request: Request) -> Response:
        path = self._assets / request.path_params["name"]
        if not path.is_file():
            return Response(status_code=404)
        return FileResponse(path)

    async def _slow_asset(self, request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("delay_s", "1")))
        return await self._asset(request)

    async def _oversized(self, request: Request) -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + bytes(OVERSIZED_BYTES), media_type="image/png")

    def deliveries(self, key: str) -> list[Delivery]:
        with self._lock:
            return list(self._hits.get(key, []))

    def wait(self, key: str, count: int = 1, timeout_s: float = 30.0) -> list[Delivery]:
        """Block until `count` deliveries for `key` arrived; return them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.deliveries(key)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries on {key}, got {self.deliveries(key)}")


class FalClient:
    """Just enough of a fal queue client, over real HTTP."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Key {key}"}, timeout=30.0
        )

    def submit(
        self, endpoint_id: str, body: dict[str, Any], webhook: str | None = None
    ) -> dict[str, Any]:
        params = {"fal_webhook": webhook} if webhook else None
        response = self.http.post(f"/{endpoint_id}", json=body, params=params)
        assert response.status_code == 200, response.text
        submitted: dict[str, Any] = response.json()
        return submitted

    def wait_completed(self, submitted: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll the status URL until it answers 200 (COMPLETED); return that status body."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = self.http.get(submitted["status_url"], params={"logs": "1"})
            if response.status_code == 200:
                status: dict[str, Any] = response.json()
                return status
            assert response.status_code == 202, response.text
            time.sleep(0.05)
        raise AssertionError(f"request {submitted['request_id']} did not complete")

    def jwks(self) -> dict[str, Any]:
        keys: dict[str, Any] = httpx.get(f"{self.base_url}/.well-known/jwks.json").json()
        return keys

    def close(self) -> None:
        self.http.close()


def data_uri(path: Path, mime: str) -> str:
    """A base64 data URI of a file, as fal_client's encode helpers build it."""
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def verifying_key_index(delivery: Delivery, jwks: dict[str, Any]) -> int | None:
    """fal's documented check; the index of the JWKS key that verifies, or None."""
    headers = delivery.headers
    timestamp = headers["x-fal-webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return None
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            timestamp,
            hashlib.sha256(delivery.body).hexdigest(),
        ]
    ).encode("utf-8")
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for index, jwk in enumerate(jwks["keys"]):
        public = Ed25519PublicKey.from_public_bytes(_b64url_decode(jwk["x"]))
        try:
            public.verify(signature, message)
        except InvalidSignature:
            continue
        return index
    return None


@dataclass(frozen=True)
class Mp4Info:
    video_codec: str
    width: int
    height: int
    duration_s: float
    audio_codec: str | None


def probe_mp4(data: bytes) -> Mp4Info:
    """Decode-level facts about an MP4, read with PyAV."""
    with av.open(io.BytesIO(data), mode="r") as container:
        assert container.duration is not None
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        return Mp4Info(
            video_codec=video.codec_context.name,
            width=video.codec_context.width,
            height=video.codec_context.height,
            duration_s=container.duration / 1_000_000,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )
