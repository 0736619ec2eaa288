"""RedisTimelineStore against a real Redis (scripts/services.sh start)."""

from __future__ import annotations

import time

import pytest
import redis

from serving.social.storage.redis import RedisTimelineStore


@pytest.fixture
def store(client: redis.Redis, redis_prefix: str) -> RedisTimelineStore:
    return RedisTimelineStore(client, redis_prefix, cap=5)


def test_push_trims_to_newest_cap(store: RedisTimelineStore) -> None:
    for post_id in [3, 1, 7, 2, 9, 5, 8, 4]:
        store.push(post_id, [10, 11])
    assert store.page(10, 100) == [9, 8, 7, 5, 4]
    assert store.page(11, 100) == [9, 8, 7, 5, 4]
    # an old post pushed into a full timeline does not survive the trim
    store.push(1, [10])
    assert store.page(10, 100) == [9, 8, 7, 5, 4]


def test_push_is_idempotent(store: RedisTimelineStore, client: redis.Redis) -> None:
    assert store.push_counted(42, [1, 2, 3]) == 3
    assert store.push_counted(42, [1, 2, 3, 4]) == 1
    for owner in (1, 2, 3, 4):
        assert store.page(owner, 10) == [42]
        assert client.zcard(store.key(owner)) == 1


def test_push_many_chunks_across_script_calls(client: redis.Redis, redis_prefix: str) -> None:
    store = RedisTimelineStore(client, redis_prefix, cap=3, chunk=7)
    owners = list(range(1, 51))
    assert store.push_counted(100, owners) == 50
    assert store.push_counted(100, owners) == 0
    for post_id in (101, 102, 103):
        store.push(post_id, owners)
    assert all(store.page(o, 10) == [103, 102, 101] for o in owners)
    assert store.push_counted(5, []) == 0


def test_push_many_backfill(store: RedisTimelineStore) -> None:
    store.push_many(1, [4, 2, 8, 6, 2, 10, 12, 14])
    assert store.page(1, 100) == [14, 12, 10, 8, 6]
    store.push_many(1, [16, 1])
    assert store.page(1, 100) == [16, 14, 12, 10, 8]
    store.push_many(1, [16])
    assert store.page(1, 100) == [16, 14, 12, 10, 8]
    store.push_many(1, [])


def test_page_cursor_is_exclusive_and_stable(client: redis.Redis, redis_prefix: str) -> None:
    store = RedisTimelineStore(client, redis_prefix, cap=100)
    for post_id in range(1, 11):
        store.push(post_id, [7])
    first = store.page(7, 3)
    assert first == [10, 9, 8]
    store.push(11, [7])  # a new post arriving between pages does not shift the cursor
    second = store.page(7, 3, before_id=first[-1])
    assert second == [7, 6, 5]
    assert store.page(7, 3, before_id=5) == [4, 3, 2]
    assert store.page(7, 3, before_id=2) == [1]
    assert store.page(7, 3, before_id=1) == []
    assert store.page(7, 0) == []
    assert store.page(7, 2) == [11, 10]
    assert store.page(999, 10) == []
    # ids beyond float32 precision stay exact
    big = 2**52 + 1
    store.push(big, [8])
    assert store.page(8, 1) == [big]


def test_remove(store: RedisTimelineStore) -> None:
    for post_id in (1, 2, 3):
        store.push(post_id, [1, 2, 3])
    store.remove([1, 2], [2, 3, 99])
    assert store.page(1, 10) == [1]
    assert store.page(2, 10) == [1]
    assert store.page(3, 10) == [3, 2, 1]
    store.remove([], [1])
    store.remove([1], [])


def test_built_mark_and_drop(store: RedisTimelineStore, client: redis.Redis) -> None:
    assert not store.is_built(1)
    store.push(5, [1, 2, 3])
    store.mark_built(1)
    store.mark_built(2)
    store.mark_built(3)
    assert store.is_built(1)
    store.drop(1)
    assert not store.is_built(1)
    assert store.page(1, 10) == []
    assert not client.exists(store.key(1))
    store.drop_many([2, 3, 4])
    assert not store.is_built(2) and not store.is_built(3)
    assert store.page(2, 10) == [] and store.page(3, 10) == []
    store.drop_many([])


def test_rejects_bad_cap(client: redis.Redis, redis_prefix: str) -> None:
    with pytest.raises(ValueError, match="cap"):
        RedisTimelineStore(client, redis_prefix, cap=0)


@pytest.mark.parametrize("cap", [800, 4], ids=["no-trim", "trimming"])
def test_push_throughput(client: redis.Redis, redis_prefix: str, cap: int) -> None:
    """One post to 10,000 followers' timelines, repeated; prints inserts/s (run with -s).

    Asserts only a loose floor (shared CI machines vary); the project target is >= 30,000/s."""
    store = RedisTimelineStore(client, redis_prefix, cap=cap)
    followers = list(range(1, 10_001))
    store.push(1, followers)  # warm up: script loaded, keys created
    rounds = 10
    start = time.perf_counter()
    for post_id in range(2, 2 + rounds):
        store.push(post_id, followers)
    elapsed = time.perf_counter() - start
    rate = rounds * len(followers) / elapsed
    print(
        f"\nRedisTimelineStore.push (cap {cap}): {rounds} posts x {len(followers)} followers "
        f"in {elapsed:.3f}s = {rate:,.0f} inserts/s"
    )
    assert store.page(1234, 3) == [11, 10, 9]
    assert client.zcard(store.key(1234)) == min(cap, rounds + 1)
    assert rate > 5_000
