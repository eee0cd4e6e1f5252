"""API keys kept in Redis (`vidhook keys create|revoke|list`), beside those in API_KEYS.

Only a key's SHA-256 is stored: `apikey:{sha256 hex}` → tenant, label, creation time, and a
set of every digest for listing. A key is shown once, when created. Each request whose key is
not in API_KEYS looks its digest up in Redis (one GET-sized HGET), with no cache, so a revoked
key stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from service.keys import RedisKeys

KEY_PREFIX = "vhk_"
KEY_ID_CHARS = 12


def digest_hex(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str  # the digest's first characters: names the key without revealing it
    tenant: str
    label: str
    created_at_ms: int


class UnknownKey(LookupError):
    """No stored key has that id (or the id is ambiguous)."""


class ApiKeyStore:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, tenant: str, *, label: str = "") -> tuple[str, StoredKey]:
        """A new key for `tenant`: the key itself (shown once) and what is stored of it."""
        if not tenant or ":" in tenant or "," in tenant:
            raise ValueError("a tenant is a non-empty name without ':' or ','")
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = digest_hex(api_key)
        stored = StoredKey(digest[:KEY_ID_CHARS], tenant, label, int(time.time() * 1000))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.api_key(digest),
                mapping={"tenant": tenant, "label": label, "created_at_ms": stored.created_at_ms},
            )
            pipe.sadd(self.keys.api_key_index, digest)
            await pipe.execute()
        return api_key, stored

    async def tenant_for(self, api_key: str) -> str | None:
        tenant = await self.redis.hget(self.keys.api_key(digest_hex(api_key)), "tenant")  # type: ignore[misc]
        return tenant.decode() if tenant else None

    async def list(self) -> list[StoredKey]:
        digests = sorted(d.decode() for d in await self.redis.smembers(self.keys.api_key_index))  # type: ignore[misc]
        async with self.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hmget(self.keys.api_key(digest), ["tenant", "label", "created_at_ms"])
            rows = await pipe.execute()
        return [
            StoredKey(digest[:KEY_ID_CHARS], tenant.decode(), label.decode(), int(created))
            for digest, (tenant, label, created) in zip(digests, rows, strict=True)
            if tenant is not None
        ]

    async def revoke(self, key_id: str) -> StoredKey:
        """Delete the key whose id is `key_id`; it is refused from the next request on."""
        digests = [
            d.decode()
            for d in await self.redis.smembers(self.keys.api_key_index)  # type: ignore[misc]
            if d.decode().startswith(key_id)
        ]
        if len(key_id) < 6 or len(digests) != 1:
            raise UnknownKey(f"no single stored key has id {key_id!r}")
        digest = digests[0]
        tenant, label, created = await self.redis.hmget(  # type: ignore[misc]
            self.keys.api_key(digest), ["tenant", "label", "created_at_ms"]
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.api_key(digest))
            pipe.srem(self.keys.api_key_index, digest)
            await pipe.execute()
        return StoredKey(
            digest[:KEY_ID_CHARS],
            (tenant or b"").decode(),
            (label or b"").decode(),
            int(created or 0),
        )
