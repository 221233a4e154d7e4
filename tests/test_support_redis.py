"""Self-test of the Redis fixtures the rest of the suite relies on."""

from __future__ import annotations

import redis
import redis.asyncio

from tests.support.redis_server import RedisServer


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def test_fresh_server_answers_and_comes_back_on_the_same_port(
    fresh_redis_server: RedisServer,
) -> None:
    server = fresh_redis_server
    url, port = server.url, server.port
    assert url == f"redis://127.0.0.1:{port}/0"
    with _client(url) as client:
        assert client.ping() is True
        client.set("before", "1")

    server.stop()
    assert not server.running
    assert not server.ping()

    server.start()
    assert (server.port, server.url) == (port, url)
    with _client(url) as client:
        assert client.ping() is True
        # --save "" --appendonly no: nothing survives a restart.
        assert client.get("before") is None


def test_killed_server_restarts_on_the_same_port(fresh_redis_server: RedisServer) -> None:
    port = fresh_redis_server.port
    fresh_redis_server.kill()
    assert not fresh_redis_server.ping()
    fresh_redis_server.start()
    assert fresh_redis_server.port == port
    assert fresh_redis_server.ping()


async def test_async_client_reaches_the_shared_server(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping() is True
        await client.set("isolation-probe", "left behind")
    finally:
        await client.aclose()


def test_redis_url_is_flushed_before_each_test(redis_url: str) -> None:
    # The previous test (or any test) leaves keys behind; FLUSHALL clears them.
    with _client(redis_url) as client:
        assert client.dbsize() == 0
        client.set("isolation-probe", "left behind")


def test_redis_url_is_flushed_again(redis_url: str) -> None:
    with _client(redis_url) as client:
        assert client.dbsize() == 0


def test_shared_server_differs_from_fresh_one(
    redis_server: RedisServer, fresh_redis_server: RedisServer
) -> None:
    assert redis_server.port != fresh_redis_server.port
    assert redis_server.running and fresh_redis_server.running
