"""fal signature verification against a real JWKS server: rotation, caching, refusal."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.fal_webhooks import FalWebhookVerifier, JwksCache, WebhookRejected
from tests.support.servers import ServerThread


def jwk(key: Ed25519PrivateKey, *, padded: bool = False) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x if padded else x.rstrip("=")}


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[Ed25519PrivateKey] = [Ed25519PrivateKey.generate()]
        self.fetches = 0
        self.padded = False

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.fetches += 1
            return JSONResponse({"keys": [jwk(key, padded=self.padded) for key in self.keys]})

        return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


@pytest.fixture
def jwks_server() -> Iterator[tuple[JwksServer, str]]:
    server = JwksServer()
    with ServerThread(server.app()) as thread:
        yield server, f"{thread.url}/.well-known/jwks.json"


def signed(key: Ed25519PrivateKey, body: bytes, request_id: str = "req-1") -> dict[str, str]:
    timestamp = str(int(time.time()))
    message = f"{request_id}\nuser\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": "user",
        "x-fal-webhook-timestamp": timestamp,
        "x-fal-webhook-signature": key.sign(message).hex(),
    }


async def verify_all(url: str, deliveries: list[tuple[dict[str, str], bytes]]) -> list[str]:
    """Verify each delivery with one verifier (one cache); 'ok' or the rejection reason."""
    async with httpx.AsyncClient() as client:
        verifier = FalWebhookVerifier(JwksCache(client, url, min_refresh_interval_s=60))
        outcomes = []
        for headers, body in deliveries:
            try:
                await verifier.verify(headers, body)
                outcomes.append("ok")
            except WebhookRejected as exc:
                outcomes.append(str(exc))
        return outcomes


def test_a_rotated_key_is_fetched_when_a_signature_matches_no_cached_key(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    body = json.dumps({"status": "OK"}).encode()
    old_key = server.keys[0]
    new_key = Ed25519PrivateKey.generate()

    async def scenario() -> list[str]:
        async with httpx.AsyncClient() as client:
            verifier = FalWebhookVerifier(JwksCache(client, url, min_refresh_interval_s=0))
            await verifier.verify(signed(old_key, body), body)
            server.keys = [new_key, old_key]  # fal rotates: the new key signs from now on
            await verifier.verify(signed(new_key, body), body)
            await verifier.verify(signed(old_key, body), body)
            return ["ok"]

    assert asyncio.run(scenario()) == ["ok"]
    assert server.fetches == 2, "one fetch at start, one when the new key was first seen"


def test_the_jwks_is_cached_between_deliveries(jwks_server: tuple[JwksServer, str]) -> None:
    server, url = jwks_server
    body = b"{}"
    deliveries = [(signed(server.keys[0], body, f"req-{n}"), body) for n in range(20)]
    assert asyncio.run(verify_all(url, deliveries)) == ["ok"] * 20
    assert server.fetches == 1


def test_forged_deliveries_cannot_force_a_jwks_fetch_each(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    body = b"{}"
    good = (signed(server.keys[0], body), body)
    forged = [(signed(Ed25519PrivateKey.generate(), body), body) for _ in range(20)]
    outcomes = asyncio.run(verify_all(url, [good, *forged]))
    assert outcomes[0] == "ok"
    assert all("matches no key" in outcome for outcome in outcomes[1:])
    assert server.fetches == 1, "the keys were fetched moments ago: no early refresh allowed"


@pytest.mark.parametrize("padded", [False, True])
def test_unpadded_and_padded_jwk_values_both_work(
    jwks_server: tuple[JwksServer, str], padded: bool
) -> None:
    server, url = jwks_server
    server.padded = padded
    body = b'{"a":1}'
    assert asyncio.run(verify_all(url, [(signed(server.keys[0], body), body)])) == ["ok"]
