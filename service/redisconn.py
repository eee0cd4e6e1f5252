"""vidhook's Redis connections, and the start-up warning about a Redis anyone can write to.

The API shares one bounded pool among all requests. A burst larger than the pool waits up to
REDIS_POOL_TIMEOUT_S for a free connection (redis-py's default pool raises "Too many
connections" at once, which was a 500); past that, the request is a 503 (`service.errors`).

Whoever can write to vidhook's Redis can complete jobs, change callback URLs and fill the
queue, so a Redis reachable from the network without a password is worth a loud line in the
logs at every start.

Both the API's pool and the worker's (the store's own, beside ARQ's) are lean: commands
packed by hiredis, in C, as redis-py's synchronous client packs them when hiredis is installed
(redis-py 5's asyncio connections pack in Python: about 40 µs for a Lua step's fifty
arguments), and a pooled connection checked for leftovers without a zero-timeout read (about
20 µs a command). A submit makes two such steps; arq 0.28 pins redis below 6.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

from redis._parsers import _AsyncHiredisParser
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.utils import HIREDIS_AVAILABLE

from service.settings import Settings

logger = logging.getLogger("vidhook.redis")


# As arq's RedisSettings.conn_timeout: a Redis that cannot be reached fails the step quickly,
# and the step is retried, instead of holding a task for the kernel's connect timeout.
WORKER_CONNECT_TIMEOUT_S = 1.0


def api_redis(settings: Settings) -> Redis:
    """A client on a blocking pool of REDIS_MAX_CONNECTIONS, waiting REDIS_POOL_TIMEOUT_S."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
    )
    return Redis.from_pool(lean_connections(pool))  # closes the pool with the client


def worker_redis(settings: Settings) -> Redis:
    """The worker's client for its own steps (the store, budgets, deliveries).

    Unbounded, as ARQ's own pool is: a worker runs at most WORKER_MAX_JOBS tasks at once.
    """
    pool = ConnectionPool.from_url(
        settings.redis_url, socket_connect_timeout=WORKER_CONNECT_TIMEOUT_S
    )
    return Redis.from_pool(lean_connections(pool))


class _PackedByHiredis:
    """A connection mix-in: commands packed by redis-py's own hiredis serializer."""

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._serializer.pack(*args)
        return packed


class _HiredisParserCheckingInPlace(_AsyncHiredisParser):
    """redis-py's hiredis parser, checking a pooled connection for leftovers without a read.

    Before every command the pool asks whether the connection holds unread bytes (a reply
    nobody read) or is closed. redis-py 5 answers with a zero-timeout read, which costs each
    command one more loop turn and a cancellation; this is the check redis-py itself adopted
    later (redis/redis-py#4063), in releases arq 0.28 does not allow (redis<6).
    """

    async def can_read_destructive(self) -> bool:
        reader, stream = self._reader, self._stream
        if not self._connected or reader is None or stream is None:
            raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
        # StreamReader has no public way to ask for buffered bytes (as upstream notes).
        buffered: bytearray = stream._buffer
        return bool(reader.has_data() or stream.at_eof() or buffered)


def lean_connections(pool: ConnectionPool) -> ConnectionPool:
    """`pool`, its new connections packing in C and checked without a read (with hiredis).

    The bytes sent are those redis-py's Python packer writes, and so are its errors (DataError
    for a value that is not bytes, str, int or float): tests/test_redisconn.py.
    """
    if HIREDIS_AVAILABLE:
        base = pool.connection_class
        pool.connection_class = type(base.__name__, (_PackedByHiredis, base), {})
        pool.connection_kwargs["parser_class"] = _HiredisParserCheckingInPlace
    return pool


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
