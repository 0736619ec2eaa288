"""RedisEventBus against a real Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from serving.social.domain import Event
from serving.social.storage.redis import RedisEventBus, make_redis

T0 = 1_767_225_600.0


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = make_redis(redis_url, socket_timeout_s=2.0)
    yield c
    c.close()


@pytest.fixture
def bus(client: redis.Redis, redis_prefix: str) -> RedisEventBus:
    return RedisEventBus(client, redis_prefix)


def event(n: int, stream: str = "posts") -> Event:
    return Event(stream=stream, kind="post.created", payload={"post_id": n}, ts=T0 + n)


def test_publish_order_and_roundtrip(bus: RedisEventBus) -> None:
    bus.ensure_group("posts", "fanout")
    sent = [event(n) for n in range(5)]
    ids = [bus.publish(e) for e in sent]
    assert all(isinstance(i, str) for i in ids)
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    got = bus.read("posts", "fanout", "c1", count=10)
    assert [m.id for m in got] == ids
    assert [m.event for m in got] == sent
    assert all(m.stream == "posts" and m.deliveries == 1 for m in got)
    assert bus.read("posts", "fanout", "c1", count=10) == []


def test_two_groups_each_see_every_message(bus: RedisEventBus) -> None:
    bus.ensure_group("posts", "a")
    bus.ensure_group("posts", "b")
    bus.ensure_group("posts", "a")  # idempotent
    ids = [bus.publish(event(n)) for n in range(3)]
    assert [m.id for m in bus.read("posts", "a", "x", 10)] == ids
    assert [m.id for m in bus.read("posts", "b", "y", 10)] == ids


def test_group_reads_from_stream_start(bus: RedisEventBus) -> None:
    ids = [bus.publish(event(n)) for n in range(2)]
    bus.ensure_group("posts", "late")
    assert [m.id for m in bus.read("posts", "late", "c", 10)] == ids


def test_count_limits_and_consumers_share(bus: RedisEventBus) -> None:
    bus.ensure_group("posts", "g")
    ids = [bus.publish(event(n)) for n in range(5)]
    first = bus.read("posts", "g", "c1", 2)
    second = bus.read("posts", "g", "c2", 10)
    assert [m.id for m in first + second] == ids


def test_ack_and_pending_count(bus: RedisEventBus) -> None:
    assert bus.pending_count("nostream", "g") == 0
    bus.ensure_group("posts", "g")
    assert bus.pending_count("posts", "g") == 0
    assert bus.pending_count("posts", "nogroup") == 0
    for n in range(3):
        bus.publish(event(n))
    got = bus.read("posts", "g", "c1", 10)
    assert bus.pending_count("posts", "g") == 3
    bus.ack("posts", "g", [got[0].id, got[1].id])
    assert bus.pending_count("posts", "g") == 1
    bus.ack("posts", "g", [got[2].id, got[2].id])
    bus.ack("posts", "g", [])
    assert bus.pending_count("posts", "g") == 0


def test_reclaim_from_a_dead_consumer(bus: RedisEventBus) -> None:
    bus.ensure_group("posts", "g")
    ids = [bus.publish(event(n)) for n in range(3)]
    assert len(bus.read("posts", "g", "dead", 10)) == 3  # read, never acked
    assert bus.reclaim("posts", "g", "alive", min_idle_ms=60_000, count=10) == []
    time.sleep(0.03)
    got = bus.reclaim("posts", "g", "alive", min_idle_ms=20, count=2)
    assert [m.id for m in got] == ids[:2]
    assert all(m.deliveries == 2 for m in got)
    assert got[0].event.payload == {"post_id": 0}
    rest = bus.reclaim("posts", "g", "alive", min_idle_ms=0, count=10)
    # everything pending now belongs to "alive"; the first two were delivered twice more
    assert sorted(m.id for m in rest) == sorted(ids)
    assert {m.id: m.deliveries for m in rest} == {ids[0]: 3, ids[1]: 3, ids[2]: 2}
    bus.ack("posts", "g", ids)
    assert bus.pending_count("posts", "g") == 0
    assert bus.reclaim("posts", "g", "alive", 0, 10) == []
    assert bus.reclaim("posts", "nogroup", "alive", 0, 10) == []


def test_reclaim_acks_entries_deleted_from_the_stream(
    bus: RedisEventBus, client: redis.Redis
) -> None:
    bus.ensure_group("posts", "g")
    ids = [bus.publish(event(n)) for n in range(3)]
    bus.read("posts", "g", "dead", 10)
    client.xdel(bus.key("posts"), ids[1])
    got = bus.reclaim("posts", "g", "alive", 0, 10)
    assert [m.id for m in got] == [ids[0], ids[2]]
    assert bus.pending_count("posts", "g") == 2


def test_malformed_entries_are_logged_and_acked(
    bus: RedisEventBus, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    bus.ensure_group("posts", "g")
    client.xadd(bus.key("posts"), {b"e": b"{not json"})
    client.xadd(bus.key("posts"), {b"other": b"1"})
    client.xadd(bus.key("posts"), {b"e": b'{"id": "x"}'})
    good = bus.publish(event(1))
    with caplog.at_level(logging.ERROR):
        got = bus.read("posts", "g", "c", 10)
    assert [m.id for m in got] == [good]
    assert sum("malformed entry" in r.getMessage() for r in caplog.records) == 3
    assert bus.pending_count("posts", "g") == 1


def test_read_blocks_and_is_capped_below_socket_timeout(bus: RedisEventBus) -> None:
    bus.ensure_group("posts", "g")
    start = time.perf_counter()
    # 60 s asked; the client's socket timeout is 2 s, so the wait is cut to about 1 s
    assert bus.read("posts", "g", "c", 10, block_ms=60_000) == []
    assert 0.5 < time.perf_counter() - start < 1.9
    start = time.perf_counter()
    assert bus.read("posts", "g", "c", 10, block_ms=0) == []
    assert time.perf_counter() - start < 0.5


def test_read_creates_a_missing_group(bus: RedisEventBus) -> None:
    bus.publish(event(1))
    assert len(bus.read("posts", "fresh", "c", 10)) == 1


def test_maxlen_trims_approximately(client: redis.Redis, redis_prefix: str) -> None:
    bus = RedisEventBus(client, redis_prefix, maxlen=10)
    for n in range(500):
        bus.publish(event(n))
    assert 10 <= client.xlen(bus.key("posts")) < 500


def test_close_disconnects(redis_url: str, redis_prefix: str) -> None:
    bus = RedisEventBus(make_redis(redis_url), redis_prefix)
    bus.publish(event(1))
    bus.close()
