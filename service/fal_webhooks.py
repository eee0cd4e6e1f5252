"""Verifying fal's webhook signatures, exactly as fal documents them.

fal signs `request_id \\n user_id \\n timestamp \\n sha256hex(raw body)` with Ed25519 and
publishes its public keys as a JWKS. Deliveries carry no key id, so every key is tried.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

REQUEST_ID_HEADER = "x-fal-webhook-request-id"
USER_ID_HEADER = "x-fal-webhook-user-id"
TIMESTAMP_HEADER = "x-fal-webhook-timestamp"
SIGNATURE_HEADER = "x-fal-webhook-signature"

logger = logging.getLogger("vidhook.webhooks")


class WebhookTokens:
    """The secret token in each job's webhook URL, derived from the job id with a server key.

    Derived rather than stored, so the receiver refuses a forged URL with no Redis read and
    before any signature work. Changing the key invalidates the URLs of jobs in flight.
    """

    def __init__(self, key: bytes) -> None:
        # Keyed once; each token copies it (cheaper than keying a new HMAC per job).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def token(self, job_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(job_id.encode())
        return base64.urlsafe_b64encode(mac.digest()[:24]).decode()

    def matches(self, job_id: str, token: str) -> bool:
        return hmac.compare_digest(self.token(job_id).encode(), token.encode())


class WebhookRejected(Exception):
    """A delivery failed verification; the message says which check, never secret material."""


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    request_id: str
    user_id: str
    timestamp_s: int


def _b64url_decode(value: str) -> bytes:
    # JWK values are unpadded base64url; fal's own sample forgets to re-pad.
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class JwksUnavailable(Exception):
    """No key to verify with: fal's JWKS cannot be fetched and none was fetched before.

    Not a verdict on the delivery: the receiver answers 503 so that fal delivers it again.
    """


class JwksCache:
    """fal's public keys, cached for `ttl_s` and re-fetched early when a signature matches none.

    One fetch at a time: deliveries that find the cache cold wait for the fetch already under
    way and use its answer. Once keys are known they are served while a newer copy is fetched
    in the background, so fal's JWKS being slow or down never delays a delivery. A failed fetch
    is remembered for `failure_backoff_s` (deliveries meanwhile do not try again, and do not
    wait). Early re-fetches after an unknown signature are rate-limited, so that a flood of
    forged deliveries cannot turn into a flood of JWKS requests.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        ttl_s: float = 3600.0,
        min_refresh_interval_s: float = 10.0,
        failure_backoff_s: float = 5.0,
        fetch_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = url
        self._ttl_s = ttl_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._failure_backoff_s = failure_backoff_s
        self._fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def keys(self) -> list[Ed25519PublicKey]:
        """The keys to verify with; raises JwksUnavailable when there are none at all."""
        fetched_at = self._fetched_at
        if fetched_at is not None and self._clock() - fetched_at <= self._ttl_s:
            return self._keys
        if self._keys:
            # Expired, but keys rotate slowly: serve these while a fresh copy is fetched.
            if self._background is None or self._background.done():
                self._background = asyncio.create_task(self._refresh(fetched_at))
            return self._keys
        await self._refresh(fetched_at)
        if not self._keys:
            raise JwksUnavailable(f"cannot fetch fal's JWKS from {self._url}")
        return self._keys

    async def refresh_if_allowed(self) -> bool:
        """Fetch again now unless the last fetch was very recent; True if newer keys are in."""
        fetched_at = self._fetched_at
        if fetched_at is not None and self._clock() - fetched_at < self._min_refresh_interval_s:
            return False
        await self._refresh(fetched_at)
        return self._fetched_at != fetched_at

    async def _refresh(self, seen_fetched_at: float | None) -> None:
        """Fetch, unless someone did (or failed to, recently) while this caller waited."""
        async with self._lock:
            if self._fetched_at != seen_fetched_at:
                return
            failed_at = self._failed_at
            if failed_at is not None and self._clock() - failed_at < self._failure_backoff_s:
                return
            try:
                response = await self._client.get(self._url, timeout=self._fetch_timeout_s)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError, WebhookRejected) as exc:
                self._failed_at = self._clock()
                logger.warning(
                    "cannot fetch fal's JWKS (%s); %s",
                    type(exc).__name__,
                    "serving the cached keys" if self._keys else "no keys to verify with",
                )
                return
            if not keys:
                self._failed_at = self._clock()
                logger.warning("fal's JWKS holds no Ed25519 key; keeping the cached ones")
                return
            self._keys, self._fetched_at, self._failed_at = keys, self._clock(), None


def _parse_jwks(document: object) -> list[Ed25519PublicKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise WebhookRejected("fal's JWKS is not a key set")
    keys: list[Ed25519PublicKey] = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("x"), str):
            continue
        if jwk.get("crv", "Ed25519") != "Ed25519":
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(_b64url_decode(jwk["x"])))
        except (ValueError, binascii.Error):
            continue
    return keys


class FalWebhookVerifier:
    """Checks a delivery's headers and raw body against fal's keys."""

    def __init__(
        self, jwks: JwksCache, *, tolerance_s: int = 300, clock: Callable[[], float] = time.time
    ) -> None:
        self._jwks = jwks
        self._tolerance_s = tolerance_s
        self._clock = clock

    async def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        """Return who sent the delivery; raise WebhookRejected, or JwksUnavailable (no keys)."""
        request_id = headers.get(REQUEST_ID_HEADER)
        user_id = headers.get(USER_ID_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature_hex = headers.get(SIGNATURE_HEADER)
        if not (request_id and user_id and timestamp and signature_hex):
            raise WebhookRejected("missing fal webhook signature headers")
        try:
            timestamp_s = int(timestamp)
            signature = bytes.fromhex(signature_hex)
        except ValueError as exc:
            raise WebhookRejected("malformed timestamp or signature header") from exc
        if abs(self._clock() - timestamp_s) > self._tolerance_s:
            raise WebhookRejected("timestamp outside the allowed window")
        message = "\n".join(
            [request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]
        ).encode()
        if _matches_any(await self._jwks.keys(), signature, message):
            return VerifiedDelivery(request_id, user_id, timestamp_s)
        # fal may have rotated its keys since we cached them.
        if await self._jwks.refresh_if_allowed() and _matches_any(
            await self._jwks.keys(), signature, message
        ):
            return VerifiedDelivery(request_id, user_id, timestamp_s)
        raise WebhookRejected("signature matches no key in fal's JWKS")


def _matches_any(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False
