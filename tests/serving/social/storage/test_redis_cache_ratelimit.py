"""RedisKeyValueCache and RedisRateLimiter against a real Redis."""

from __future__ import annotations

import math
import threading
import time

import pytest
import redis

from serving.social.storage.redis import RedisKeyValueCache, RedisRateLimiter

T0 = 1_767_225_600.0


@pytest.fixture
def kv(client: redis.Redis, redis_prefix: str) -> RedisKeyValueCache:
    return RedisKeyValueCache(client, redis_prefix)


@pytest.fixture
def limiter(client: redis.Redis, redis_prefix: str) -> RedisRateLimiter:
    return RedisRateLimiter(client, redis_prefix)


def test_kv_set_get_delete(kv: RedisKeyValueCache, client: redis.Redis, redis_prefix: str) -> None:
    assert kv.get("a") is None
    kv.set("a", b"\x00value", 60)
    assert kv.get("a") == b"\x00value"
    assert client.exists(f"{redis_prefix}kv:a")
    assert 59_000 < client.pttl(f"{redis_prefix}kv:a") <= 60_000
    kv.set("a", b"v2", 60)
    assert kv.get("a") == b"v2"
    kv.delete("a")
    assert kv.get("a") is None
    kv.delete("missing")


def test_kv_ttl_expires(kv: RedisKeyValueCache) -> None:
    kv.set("short", b"x", 0.05)
    assert kv.get("short") == b"x"
    time.sleep(0.15)
    assert kv.get("short") is None
    kv.set("gone", b"x", 60)
    kv.set("gone", b"y", 0)
    assert kv.get("gone") is None


def test_new_bucket_starts_full_and_refills(limiter: RedisRateLimiter) -> None:
    for _ in range(5):
        assert limiter.acquire("u1", capacity=5, refill_per_s=0.5, now=T0) == 0.0
    assert limiter.acquire("u1", 5, 0.5, T0) == pytest.approx(2.0)
    assert limiter.acquire("u1", 5, 0.5, T0 + 1.0) == pytest.approx(1.0)  # half a token there
    assert limiter.acquire("u1", 5, 0.5, T0 + 2.0) == 0.0  # one token refilled, taken
    assert limiter.acquire("u1", 5, 0.5, T0 + 2.0, cost=2) == pytest.approx(4.0)
    # refill is capped at capacity
    assert limiter.acquire("u1", 5, 0.5, T0 + 1000, cost=5) == 0.0
    assert limiter.acquire("u1", 5, 0.5, T0 + 1000) == pytest.approx(2.0)
    # buckets are independent
    assert limiter.acquire("u2", 5, 0.5, T0) == 0.0


def test_fractional_costs_and_clock_going_back(limiter: RedisRateLimiter) -> None:
    assert limiter.acquire("k", 1, 10, T0, cost=0.25) == 0.0
    assert limiter.acquire("k", 1, 10, T0, cost=0.75) == 0.0
    assert limiter.acquire("k", 1, 10, T0, cost=0.5) == pytest.approx(0.05)
    # a caller whose clock is behind gets no refill (and does not rewind the bucket)
    assert limiter.acquire("k", 1, 10, T0 - 5, cost=0.5) == pytest.approx(0.05)
    assert limiter.acquire("k", 1, 10, T0 + 0.05, cost=0.5) == 0.0


def test_bucket_key_expires_once_full(
    limiter: RedisRateLimiter, client: redis.Redis, redis_prefix: str
) -> None:
    limiter.acquire("e", capacity=10, refill_per_s=2, now=T0, cost=4)
    ttl = client.pttl(f"{redis_prefix}rl:e")
    assert 2_000 < ttl <= 3_000  # 4 tokens at 2/s = 2 s, plus a second of margin


def test_invalid_arguments(limiter: RedisRateLimiter) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        limiter.acquire("x", capacity=2, refill_per_s=1, now=T0, cost=3)
    with pytest.raises(ValueError):
        limiter.acquire("x", capacity=0, refill_per_s=1, now=T0)
    assert limiter.acquire("z", capacity=1, refill_per_s=0, now=T0) == 0.0
    assert limiter.acquire("z", capacity=1, refill_per_s=0, now=T0 + 100) == math.inf


def test_concurrent_acquire_never_over_grants(limiter: RedisRateLimiter) -> None:
    capacity, threads, attempts = 50, 8, 20
    granted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker() -> None:
        mine = 0
        barrier.wait()
        for _ in range(attempts):
            if limiter.acquire("shared", capacity, refill_per_s=0.001, now=T0) == 0.0:
                mine += 1
        with lock:
            granted.append(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert sum(granted) == capacity
