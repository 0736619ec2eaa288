"""The production storage adapters on Redis: timelines, story trays, the key-value cache, rate
limits and the event bus, all sharing one client from :func:`make_redis` (``client``).

May import :mod:`serving.social.domain`, :mod:`serving.social.storage.interfaces` and
:mod:`serving.social.storage.checks`; never the SQL adapters, services or the API.
"""

from __future__ import annotations

from serving.social.storage.redis.bus import RedisEventBus
from serving.social.storage.redis.cache import RedisKeyValueCache
from serving.social.storage.redis.client import make_key, make_redis, namespace
from serving.social.storage.redis.ratelimit import RedisRateLimiter
from serving.social.storage.redis.stories import RedisStoryCache
from serving.social.storage.redis.timelines import RedisTimelineStore

__all__ = [
    "RedisEventBus",
    "RedisKeyValueCache",
    "RedisRateLimiter",
    "RedisStoryCache",
    "RedisTimelineStore",
    "make_key",
    "make_redis",
    "namespace",
]
