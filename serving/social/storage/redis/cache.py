"""A key-value cache with expiry on Redis strings (the production :class:`KeyValueCache`)."""

from __future__ import annotations

import math

import redis

from serving.social.storage.redis.client import check_prefix, guarded, namespace


@guarded
class RedisKeyValueCache:
    """Values under ``{prefix}kv:{key}``, each with its own TTL (``SET ... PX``)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self.prefix = check_prefix(prefix)
        self._kv = namespace(prefix, "kv")

    def key(self, key: str) -> str:
        """The Redis key holding ``key``."""
        return f"{self._kv}{key}"

    def get(self, key: str) -> bytes | None:
        """The value, or None when missing or expired."""
        value = self._client.get(self.key(key))
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Stores ``value`` for ``ttl_s`` seconds (rounded up to whole milliseconds); a
        ``ttl_s`` <= 0 means already expired, so the key is deleted instead."""
        if ttl_s <= 0:
            self.delete(key)
            return
        self._client.set(self.key(key), value, px=max(1, math.ceil(ttl_s * 1000)))

    def delete(self, key: str) -> None:
        """Removes ``key`` (no error if missing)."""
        self._client.delete(self.key(key))
