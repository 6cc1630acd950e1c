"""Redis client, created on first use and shared by the threads of a process."""
from __future__ import annotations

import threading
from typing import Any

import redis

from booking_core import config

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def get_redis(url: str | None = None) -> redis.Redis:
    url = url or config.redis_url()
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                pool = redis.BlockingConnectionPool.from_url(
                    url, max_connections=256, timeout=5, socket_connect_timeout=2, health_check_interval=30,
                    socket_timeout=config.redis_socket_timeout_s(), decode_responses=True,
                )
                client = _clients[url] = redis.Redis(connection_pool=pool)
    return client


def reset_clients() -> None:
    """Drop cached clients (tests that change REDIS_URL)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


class PrefixedRedis:
    """Base of the Redis adapters: an injected client (tests) or the shared one, and the key prefix of this
    stack (REDIS_PREFIX unless given), both resolved on use so configuration read at call time applies."""

    def __init__(self, client: redis.Redis | None = None, prefix: str | None = None):
        self._client = client
        self._prefix = prefix

    @property
    def redis(self) -> Any:
        """The client. Typed Any: with decode_responses=True every reply is str, which redis-py's annotations
        (bytes | str) cannot express, so each adapter's methods say what they return instead."""
        return self._client or get_redis()

    @property
    def prefix(self) -> str:
        return self._prefix if self._prefix is not None else config.redis_prefix()
