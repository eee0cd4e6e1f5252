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

from service.fal_webhooks import FalWebhookVerifier, JwksCache, JwksUnavailable, WebhookRejected
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
        self.delay_s = 0.0
        self.status_code = 200

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.fetches += 1
            await asyncio.sleep(self.delay_s)
            if self.status_code != 200:
                return Response(status_code=self.status_code)
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


async def verify_concurrently(
    cache: JwksCache, deliveries: list[tuple[dict[str, str], bytes]]
) -> list[str]:
    """Verify all deliveries at once through one cache; 'ok', 'unavailable' or 'rejected'."""

    async def one(headers: dict[str, str], body: bytes) -> str:
        try:
            await FalWebhookVerifier(cache).verify(headers, body)
        except JwksUnavailable:
            return "unavailable"
        except WebhookRejected:
            return "rejected"
        return "ok"

    return list(await asyncio.gather(*(one(h, b) for h, b in deliveries)))


def test_concurrent_deliveries_at_a_cold_start_fetch_the_jwks_once(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    server.delay_s = 0.2  # long enough for every delivery to find the cache still cold
    body = b"{}"
    deliveries = [(signed(server.keys[0], body, f"req-{n}"), body) for n in range(20)]

    async def scenario() -> list[str]:
        async with httpx.AsyncClient() as client:
            return await verify_concurrently(JwksCache(client, url), deliveries)

    assert asyncio.run(scenario()) == ["ok"] * 20
    assert server.fetches == 1


def test_after_a_failed_fetch_deliveries_do_not_each_wait_for_another(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    server.delay_s = 5.0  # fal's JWKS hangs; each fetch gives up after 0.3 s
    body = b"{}"
    deliveries = [(signed(server.keys[0], body, f"req-{n}"), body) for n in range(10)]

    async def scenario() -> tuple[list[str], list[str], float]:
        async with httpx.AsyncClient() as client:
            cache = JwksCache(client, url, fetch_timeout_s=0.3, failure_backoff_s=30)
            first = await verify_concurrently(cache, deliveries)
            started = time.monotonic()
            later = await verify_concurrently(cache, deliveries)
            return first, later, time.monotonic() - started

    first, later, later_s = asyncio.run(scenario())
    assert first == later == ["unavailable"] * 10
    assert later_s < 0.1, "a recent failure is remembered: no delivery waits on a new fetch"
    assert server.fetches == 1


def test_expired_keys_are_served_while_the_jwks_is_refetched(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    body = b"{}"
    delivery = [(signed(server.keys[0], body), body)]

    async def scenario() -> tuple[list[str], float]:
        async with httpx.AsyncClient() as client:
            cache = JwksCache(client, url, ttl_s=0.05)
            await verify_concurrently(cache, delivery)
            await asyncio.sleep(0.1)
            server.delay_s = 1.0  # the refresh is slow, the delivery must not be
            started = time.monotonic()
            outcome = await verify_concurrently(cache, delivery)
            elapsed_s = time.monotonic() - started
            await asyncio.sleep(1.2)  # let the background refresh land
            return outcome, elapsed_s

    outcome, elapsed_s = asyncio.run(scenario())
    assert outcome == ["ok"]
    assert elapsed_s < 0.5
    assert server.fetches == 2


def test_with_no_key_ever_fetched_a_delivery_is_unavailable_not_rejected(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    server.status_code = 503
    body = b"{}"

    async def scenario() -> list[str]:
        async with httpx.AsyncClient() as client:
            return await verify_concurrently(
                JwksCache(client, url), [(signed(server.keys[0], body), body)]
            )

    assert asyncio.run(scenario()) == ["unavailable"]
