"""The API's Redis connections, and the start-up warning about a Redis anyone can write to.

The API shares one bounded pool among all requests. A burst larger than the pool waits up to
REDIS_POOL_TIMEOUT_S for a free connection (redis-py's default pool raises "Too many
connections" at once, which was a 500); past that, the request is a 503 (`service.errors`).

Whoever can write to vidhook's Redis can complete jobs, change callback URLs and fill the
queue, so a Redis reachable from the network without a password is worth a loud line in the
logs at every start.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from service.settings import Settings

logger = logging.getLogger("vidhook.redis")


def api_redis(settings: Settings) -> Redis:
    """A client on a blocking pool of REDIS_MAX_CONNECTIONS, waiting REDIS_POOL_TIMEOUT_S."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
    )
    return Redis.from_pool(pool)  # closes the pool with the client


def unauthenticated_remote(url: str) -> bool:
    """True when `url` sends no credentials to a host other than this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or parts.password or parts.username:
        return False
    host = (parts.hostname or "").lower()
    if host in ("", "localhost") or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name (e.g. compose's `redis`): reachable over the network


async def warn_if_unauthenticated(redis: Redis, url: str) -> bool:
    """Log a warning if Redis at a non-loopback address answers without auth; True if it did."""
    if not unauthenticated_remote(url):
        return False
    try:
        await redis.ping()
    except RedisError:
        return False  # it asks for a password (or is down): nothing to warn about here
    logger.warning(
        "Redis at %s accepts commands without a password on a non-loopback address: anyone who "
        "can reach it can change jobs and enqueue work. Set requirepass (or an ACL user) in "
        "redis.conf and put the credentials in REDIS_URL.",
        urlsplit(url).hostname,
    )
    return True
