"""The embedded SQL adapters (timelines, story trays, key-value cache, rate limiter) on SQLite
and PostgreSQL."""

from __future__ import annotations

import math
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.social.clock import ManualClock
from serving.social.domain import Story
from serving.social.storage.sql import (
    SqlKeyValueCache,
    SqlRateLimiter,
    SqlStoryCache,
    SqlTimelineStore,
    schema,
)

T0 = 1_767_225_600.0


def _stored_rows(engine: Engine, owner_id: int) -> int:
    t = schema.timeline.c
    statement = sa.select(sa.func.count()).where(t.owner_id == owner_id)
    with engine.begin() as connection:
        return int(connection.execute(statement).scalar_one())


# --- timelines -----------------------------------------------------------------------------------


def test_timeline_push_page_cap_and_idempotency(engine: Engine) -> None:
    tl = SqlTimelineStore(engine, cap=5)
    for post in range(1, 9):
        tl.push(post, [1, 2])
    tl.push(8, [1, 2])  # again: no change
    assert tl.page(1, 100) == [8, 7, 6, 5, 4]
    assert _stored_rows(engine, 1) == 5  # small fanouts trim exactly
    assert tl.page(1, 2) == [8, 7]
    assert tl.page(1, 2, before_id=7) == [6, 5]
    assert tl.page(1, 10, before_id=5) == [4]
    assert tl.page(1, 10, before_id=4) == []
    assert tl.page(1, 0) == []
    assert tl.page(3, 10) == []
    # an old post pushed into a full timeline falls off at once
    tl.push(2, [1])
    assert tl.page(1, 100) == [8, 7, 6, 5, 4]
    tl.push(100, [])  # no owners: nothing happens


def test_timeline_push_many_backfill(engine: Engine) -> None:
    tl = SqlTimelineStore(engine, cap=4)
    tl.push_many(7, [3, 1, 9, 5, 7, 11, 2])
    assert tl.page(7, 10) == [11, 9, 7, 5]
    tl.push_many(7, [4, 12])
    assert tl.page(7, 10) == [12, 11, 9, 7]
    assert _stored_rows(engine, 7) == 4
    tl.push_many(7, [])


def test_timeline_large_fanout_is_fast_and_exact(engine: Engine) -> None:
    tl = SqlTimelineStore(engine, cap=10, exact_trim_max=16, trim_every=4)
    owners = list(range(1, 10_001))
    started = time.perf_counter()
    tl.push(1, owners)
    first = time.perf_counter() - started
    assert first < 5.0, f"push to 10k timelines took {first:.2f}s"
    for post in range(2, 16):
        tl.push(post, owners[:50])
    # visible: exactly the newest cap, though more rows may be stored before a lazy trim
    for owner in (1, 17, 50):
        assert tl.page(owner, 100) == list(range(15, 5, -1))
        assert tl.page(owner, 3, before_id=7) == [6]
    # removing a visible post trims first, so nothing older than the cap reappears
    tl.remove([1, 17], [15])
    assert tl.page(1, 100) == list(range(14, 5, -1))
    assert _stored_rows(engine, 1) == 9
    assert tl.page(10_000, 5) == [1]


def test_timeline_remove_built_and_drop(engine: Engine) -> None:
    tl = SqlTimelineStore(engine, cap=50)
    for post in (10, 20, 30):
        tl.push(post, [1, 2, 3])
    tl.remove([1, 2], [20, 30, 999])
    assert tl.page(1, 10) == [10] and tl.page(2, 10) == [10] and tl.page(3, 10) == [30, 20, 10]
    tl.remove([], [10])
    tl.remove([1], [])
    assert not tl.is_built(1)
    for owner in (1, 2, 3):
        tl.mark_built(owner)
    tl.mark_built(1)  # idempotent
    assert tl.is_built(1)
    tl.drop(1)
    assert not tl.is_built(1) and tl.page(1, 10) == []
    tl.drop_many([2, 3, 4])
    assert not tl.is_built(2) and not tl.is_built(3) and tl.page(3, 10) == []
    tl.drop_many([])


def test_timeline_rejects_bad_cap(engine: Engine) -> None:
    with pytest.raises(ValueError, match="cap"):
        SqlTimelineStore(engine, cap=0)


# --- story trays ---------------------------------------------------------------------------------


def test_story_cache(engine: Engine) -> None:
    cache = SqlStoryCache(engine)
    s1 = Story(1, author_id=10, media_id=5, created_at=T0, expires_at=T0 + 100)
    s2 = Story(2, author_id=10, media_id=5, created_at=T0 + 5, expires_at=T0 + 105)
    s3 = Story(3, author_id=20, media_id=5, created_at=T0 + 1, expires_at=T0 + 101)
    for story in (s2, s1, s3):
        cache.add(story)
    cache.add(s1)  # idempotent
    assert cache.active([10, 20, 30], T0 + 50) == {
        10: [(1, T0, T0 + 100), (2, T0 + 5, T0 + 105)],
        20: [(3, T0 + 1, T0 + 101)],
    }
    # strictly expires_at > now
    assert cache.active([10], T0 + 100) == {10: [(2, T0 + 5, T0 + 105)]}
    assert cache.active([10, 20], T0 + 105) == {}
    assert cache.active([], T0) == {}
    cache.remove([s1])
    assert cache.active([10], T0) == {10: [(2, T0 + 5, T0 + 105)]}
    cache.remove([])
    assert cache.is_built()  # lives with the stories in the database file


# --- key-value cache -----------------------------------------------------------------------------


def test_kv_cache_expiry(engine: Engine) -> None:
    clock = ManualClock(T0)
    cache = SqlKeyValueCache(engine, now=clock.now, purge_every=3)
    cache.set("a", b"\x00\x01value", 10)
    assert cache.get("a") == b"\x00\x01value"
    assert cache.get("missing") is None
    cache.set("a", b"v2", 20)  # overwrite extends
    clock.advance(19.9)
    assert cache.get("a") == b"v2"
    clock.advance(0.1)
    assert cache.get("a") is None  # expired exactly at now + ttl
    with engine.begin() as connection:
        left = connection.execute(sa.select(sa.func.count()).select_from(schema.kv_cache))
        assert left.scalar_one() == 0  # purged lazily by the read
    cache.set("b", b"x", 5)
    cache.set("b", b"y", 0)  # ttl <= 0 deletes
    assert cache.get("b") is None
    cache.set("c", b"x", 5)
    cache.delete("c")
    cache.delete("c")
    assert cache.get("c") is None
    for i in range(5):
        cache.set(f"old{i}", b"x", 1)
    clock.advance(2)
    assert cache.purge_expired() == 5


# --- rate limiter --------------------------------------------------------------------------------


def test_rate_limiter_refill_and_retry_after(engine: Engine) -> None:
    limiter = SqlRateLimiter(engine)
    for _ in range(3):
        assert limiter.acquire("k", capacity=3, refill_per_s=0.5, now=T0) == 0.0
    assert limiter.acquire("k", 3, 0.5, T0) == pytest.approx(2.0)
    assert limiter.acquire("k", 3, 0.5, T0 + 1) == pytest.approx(1.0)  # denied: nothing taken
    assert limiter.acquire("k", 3, 0.5, T0 + 2) == 0.0  # exactly one token refilled
    assert limiter.acquire("k", 3, 0.5, T0 + 2, cost=2) == pytest.approx(4.0)
    assert limiter.acquire("k", 3, 0.5, T0 + 1000, cost=3) == 0.0  # refill capped at capacity
    assert limiter.acquire("k", 3, 0.5, T0 + 1000) == pytest.approx(2.0)
    # a clock behind the bucket gives no refill (and no negative refill)
    assert limiter.acquire("k", 3, 0.5, T0 + 500) == pytest.approx(2.0)
    # buckets are independent; a new one starts full
    assert limiter.acquire("other", 1, 1, T0) == 0.0
    # no refill: an empty bucket never fills
    assert limiter.acquire("frozen", 1, 0, T0) == 0.0
    assert limiter.acquire("frozen", 1, 0, T0 + 10**6) == math.inf
    with pytest.raises(ValueError, match="capacity"):
        limiter.acquire("k", 1, 1, T0, cost=2)
    with pytest.raises(ValueError):
        limiter.acquire("k", 0, 1, T0)


def test_rate_limiter_concurrent_callers_never_overdraw(engine: Engine) -> None:
    limiter = SqlRateLimiter(engine)
    granted: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        mine = 0
        try:
            for _ in range(15):
                if limiter.acquire("shared", capacity=40, refill_per_s=0.0, now=T0) == 0.0:
                    mine += 1
        except BaseException as error:
            errors.append(error)
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(granted) == 40
