"""Fixtures the adapter tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from serving.social.storage.redis import make_redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis (keys go under the test's ``redis_prefix``)."""
    c = make_redis(redis_url)
    yield c
    c.close()
