"""RedisStoryCache against a real Redis."""

from __future__ import annotations

import pytest
import redis

from serving.social.domain import Story
from serving.social.storage.redis import RedisStoryCache

T0 = 1_767_225_600.0  # the ManualClock's default start: far from Redis's own clock on purpose
DAY = 86_400.0


@pytest.fixture
def cache(client: redis.Redis, redis_prefix: str) -> RedisStoryCache:
    return RedisStoryCache(client, redis_prefix, story_ttl_s=DAY)


def story(story_id: int, author: int, created_at: float) -> Story:
    return Story(
        id=story_id,
        author_id=author,
        media_id=story_id,
        created_at=created_at,
        expires_at=created_at + DAY,
    )


def test_expiry_exactly_at_the_boundary(cache: RedisStoryCache) -> None:
    s = story(1, 10, T0)
    cache.add(s)
    assert cache.active([10], s.expires_at - 1e-3) == {10: [(1, T0, T0 + DAY)]}
    assert cache.active([10], s.expires_at) == {}
    assert cache.active([10], s.expires_at + 1) == {}
    assert cache.active([10], T0) == {10: [(1, T0, T0 + DAY)]}


def test_active_oldest_first_and_omits_authors_without_stories(cache: RedisStoryCache) -> None:
    cache.add(story(3, 10, T0 + 30))
    cache.add(story(1, 10, T0 + 10))
    cache.add(story(2, 11, T0 + 20))
    cache.add(story(4, 12, T0 - DAY))  # expired by T0 + 30
    now = T0 + 30
    got = cache.active([10, 11, 12, 13, 10], now)
    assert got == {
        10: [(1, T0 + 10, T0 + 10 + DAY), (3, T0 + 30, T0 + 30 + DAY)],
        11: [(2, T0 + 20, T0 + 20 + DAY)],
    }
    # author 10's first story expires first
    assert [s[0] for s in cache.active([10], T0 + 10 + DAY)[10]] == [3]
    assert cache.active([], now) == {}


def test_remove(cache: RedisStoryCache, client: redis.Redis, redis_prefix: str) -> None:
    a, b = story(1, 10, T0), story(2, 10, T0 + 1)
    cache.add(a)
    cache.add(b)
    cache.remove([a])
    assert cache.active([10], T0 + 2) == {10: [(2, T0 + 1, T0 + 1 + DAY)]}
    cache.remove([b])
    assert cache.active([10], T0 + 2) == {}
    assert not client.exists(f"{redis_prefix}st:10", f"{redis_prefix}stc:10")
    cache.remove([])


def test_keys_get_a_relative_ttl(
    cache: RedisStoryCache, client: redis.Redis, redis_prefix: str
) -> None:
    cache.add(story(1, 10, T0))
    for key in (f"{redis_prefix}st:10", f"{redis_prefix}stc:10"):
        ttl = client.pttl(key)
        assert DAY * 1000 < ttl <= (DAY + 3_600) * 1000


def test_built_mark_goes_with_the_data(
    cache: RedisStoryCache, client: redis.Redis, redis_prefix: str
) -> None:
    assert not cache.is_built()
    cache.mark_built()
    assert cache.is_built()
    client.delete(*client.scan_iter(match=f"{redis_prefix}*"))  # what a restart loses
    assert not cache.is_built()
