"""vidhook's lean Redis connections (service/redisconn.py), against a real Redis.

They must write the same bytes redis-py's own packer writes, refuse what it refuses, and still
notice a pooled connection that holds a reply nobody read or that Redis has closed, so the next
command never reads another command's answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Connection, ConnectionPool, Redis, UnixDomainSocketConnection
from redis.exceptions import DataError

from service.dev.localredis import LocalRedis
from service.redisconn import lean_connections

ARGUMENT_LISTS: list[tuple[Any, ...]] = [
    ("SET", "key", "é ☃ 中"),
    ("SET", b"key", b"\x00\xff\r\n"),
    ("EVALSHA", "0" * 40, 3, -5, 0, 2**70),
    ("SET", "key", 0.1),
    ("SET", "key", 1e20),
    ("SET", "key", 1.5e-7),
    ("SET", "key", float("inf")),
    ("SET", "key", memoryview(b"view")),
    ("CLIENT SETNAME", "vidhook"),
    ("SET", "key", ""),
    ("SET", "key", "x" * 100_000),
]


def lean_pool(url: str) -> ConnectionPool:
    return lean_connections(ConnectionPool.from_url(url))


@pytest.mark.parametrize("args", ARGUMENT_LISTS, ids=lambda args: str(args[0]))
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(args: tuple[Any, ...]) -> None:
    lean = lean_pool("redis://127.0.0.1:1/0").make_connection()
    # The lean packer, not redis-py's inherited one (which would make this comparison moot).
    assert type(lean).pack_command is not Connection.pack_command
    assert b"".join(lean.pack_command(*args)) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("value", [True, None, object()])
def test_values_redis_py_refuses_are_refused_the_same_way(value: object) -> None:
    lean = lean_pool("redis://127.0.0.1:1/0").make_connection()
    with pytest.raises(DataError):
        Connection().pack_command("SET", "key", value)
    with pytest.raises(DataError):
        lean.pack_command("SET", "key", value)


def test_the_url_still_chooses_the_kind_of_connection() -> None:
    assert issubclass(
        lean_pool("unix:///tmp/none.sock").connection_class, UnixDomainSocketConnection
    )
    assert issubclass(lean_pool("redis://127.0.0.1:1/0").connection_class, Connection)


def test_a_connection_returned_with_an_unread_reply_is_replaced(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        async with Redis.from_pool(lean_pool(redis_server.url)) as redis:
            await redis.set("lean:key", "the value")
            pool = redis.connection_pool
            stale = await pool.get_connection()
            # A command whose reply nobody reads (a caller cancelled mid-read, a bug), then
            # the connection back in the pool with that reply waiting in its buffer.
            await stale.send_command("PING")
            await asyncio.sleep(0.05)
            assert await stale.can_read_destructive()
            await pool.release(stale)
            assert await redis.get("lean:key") == b"the value"

    asyncio.run(scenario())


def test_a_connection_redis_closed_is_replaced(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        async with Redis.from_pool(lean_pool(redis_server.url)) as redis:
            await redis.set("lean:closed", "still here")
            pool = redis.connection_pool
            idle = await pool.get_connection()
            await idle.send_command("CLIENT", "ID")
            client_id = await idle.read_response()
            await pool.release(idle)
            async with Redis.from_url(redis_server.url) as other:
                assert await other.client_kill_filter(_id=client_id) == 1
            await asyncio.sleep(0.05)
            assert await redis.get("lean:closed") == b"still here"

    asyncio.run(scenario())


def test_a_clean_idle_connection_is_kept(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        async with Redis.from_pool(lean_pool(redis_server.url)) as redis:
            first = await redis.client_id()
            await asyncio.sleep(0.05)
            assert await redis.client_id() == first

    asyncio.run(scenario())
