"""Ed25519 webhook signatures and the JWKS document that publishes their public keys.

fal signs `request_id \\n user_id \\n timestamp \\n sha256hex(raw body)` and sends the signature
hex-encoded. The first key signs; every key is published, which is how a rotation looks to a
verifier: the new key appears in the JWKS before (or while) it signs.

With a rotation period, the keys take turns instead: key i signs during the i-th period (the
last one stays), and the JWKS publishes the one before (deliveries signed just before the
turn), the current one and the next (before it signs), so a verifier's cached JWKS goes stale
and must be fetched again the way a real rotation makes it.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The exact bytes fal's documentation says are signed."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((request_id, user_id, timestamp, digest)).encode("utf-8")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class WebhookSigner:
    """Signs webhook deliveries with the first key and publishes all keys as a JWKS."""

    def __init__(
        self,
        seeds_hex: Sequence[str],
        *,
        rotation_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not seeds_hex:
            raise ValueError("at least one signing key is needed")
        self._keys = [Ed25519PrivateKey.from_private_bytes(bytes.fromhex(s)) for s in seeds_hex]
        self._rotation_s = rotation_s
        self._clock = clock
        self._started = clock()

    def _current(self) -> int:
        if self._rotation_s <= 0:
            return 0
        return min(int((self._clock() - self._started) / self._rotation_s), len(self._keys) - 1)

    def sign(self, *, request_id: str, user_id: str, timestamp: str, body: bytes) -> str:
        """Return the hex signature for one delivery attempt."""
        message = signed_message(request_id, user_id, timestamp, body)
        return self._keys[self._current()].sign(message).hex()

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JSON Web Key Set: OKP/Ed25519 keys, `x` base64url without padding."""
        published = self._keys
        if self._rotation_s > 0:
            current = self._current()
            published = self._keys[max(0, current - 1) : current + 2]
        keys = []
        for key in published:
            public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(public),
                    "kid": hashlib.sha256(public).hexdigest()[:16],
                }
            )
        return {"keys": keys}
