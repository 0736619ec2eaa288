"""SqlEventBus on SQLite and PostgreSQL: consumer groups, pending entries, reclaim."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.social.clock import ManualClock
from serving.social.domain import Event
from serving.social.storage.sql import SqlEventBus, schema

T0 = 1_767_225_600.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def bus(engine: Engine, clock: ManualClock) -> Iterator[SqlEventBus]:
    bus = SqlEventBus(engine, now=clock.now, poll_interval_s=0.01)
    yield bus
    bus.close()


def _event(i: int, stream: str = "posts") -> Event:
    return Event(stream, "post.created", {"post": i}, T0 + i, id=f"{stream}-{i}")


def test_publish_read_ack(bus: SqlEventBus) -> None:
    bus.ensure_group("posts", "fanout")
    bus.ensure_group("posts", "fanout")  # idempotent
    ids = [bus.publish(_event(i)) for i in range(5)]
    bus.publish(_event(99, stream="graph"))  # another stream
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    first = bus.read("posts", "fanout", "c1", count=3)
    assert [m.id for m in first] == ids[:3]
    assert [m.event.payload["post"] for m in first] == [0, 1, 2]
    assert all(m.stream == "posts" and m.deliveries == 1 for m in first)
    assert first[0].event == _event(0)
    assert bus.pending_count("posts", "fanout") == 3
    second = bus.read("posts", "fanout", "c2", count=10)
    assert [m.id for m in second] == ids[3:]
    assert bus.read("posts", "fanout", "c1", count=10) == []
    bus.ack("posts", "fanout", [m.id for m in first])
    bus.ack("posts", "fanout", [first[0].id])  # acking twice is harmless
    bus.ack("posts", "fanout", [])
    assert bus.pending_count("posts", "fanout") == 2
    assert bus.pending_count("posts", "nogroup") == 0
    assert bus.read("posts", "fanout", "c1", count=0) == []


def test_two_groups_each_see_every_message(bus: SqlEventBus) -> None:
    bus.ensure_group("graph", "fanout")
    ids = [bus.publish(_event(i, "graph")) for i in range(4)]
    bus.ensure_group("graph", "audit")  # created later: still reads from the start
    a = bus.read("graph", "fanout", "x", count=10)
    b = bus.read("graph", "audit", "y", count=2) + bus.read("graph", "audit", "y", count=10)
    assert [m.id for m in a] == ids and [m.id for m in b] == ids
    bus.ack("graph", "fanout", ids)
    assert bus.pending_count("graph", "fanout") == 0
    assert bus.pending_count("graph", "audit") == 4


def test_read_creates_a_missing_group(bus: SqlEventBus) -> None:
    bus.publish(_event(1))
    assert [m.event.payload["post"] for m in bus.read("posts", "new", "c", 5)] == [1]


def test_reclaim_idle_pending(bus: SqlEventBus, clock: ManualClock) -> None:
    bus.ensure_group("media", "workers")
    ids = [bus.publish(_event(i, "media")) for i in range(3)]
    got = bus.read("media", "workers", "dead", count=3)
    assert len(got) == 3
    clock.advance(5)
    assert bus.reclaim("media", "workers", "alive", min_idle_ms=10_000, count=10) == []
    bus.ack("media", "workers", [ids[1]])
    clock.advance(5)  # now idle for exactly 10 s
    claimed = bus.reclaim("media", "workers", "alive", min_idle_ms=10_000, count=1)
    assert [(m.id, m.deliveries) for m in claimed] == [(ids[0], 2)]
    assert claimed[0].event == _event(0, "media")
    claimed = bus.reclaim("media", "workers", "alive", min_idle_ms=10_000, count=10)
    assert [(m.id, m.deliveries) for m in claimed] == [(ids[2], 2)]
    # reclaimed entries start a new idle period
    assert bus.reclaim("media", "workers", "other", min_idle_ms=10_000, count=10) == []
    clock.advance(10)
    again = bus.reclaim("media", "workers", "other", min_idle_ms=10_000, count=10)
    assert [(m.id, m.deliveries) for m in again] == [(ids[0], 3), (ids[2], 3)]
    assert bus.pending_count("media", "workers") == 2
    bus.ack("media", "workers", [m.id for m in again])
    assert bus.pending_count("media", "workers") == 0
    assert bus.reclaim("media", "workers", "x", 0, 0) == []


def test_blocking_read_waits_for_a_publish(bus: SqlEventBus) -> None:
    bus.ensure_group("posts", "g")
    started = time.monotonic()
    assert bus.read("posts", "g", "c", 5, block_ms=100) == []
    assert time.monotonic() - started >= 0.09
    timer = threading.Timer(0.1, lambda: bus.publish(_event(7)))
    timer.start()
    try:
        got = bus.read("posts", "g", "c", 5, block_ms=5_000)
    finally:
        timer.join()
    assert [m.event.payload["post"] for m in got] == [7]


def test_close_ends_a_blocking_read(bus: SqlEventBus) -> None:
    bus.ensure_group("posts", "g")
    timer = threading.Timer(0.1, bus.close)
    timer.start()
    started = time.monotonic()
    assert bus.read("posts", "g", "c", 5, block_ms=10_000) == []
    timer.join()
    assert time.monotonic() - started < 5


def test_concurrent_consumers_split_messages(bus: SqlEventBus) -> None:
    bus.ensure_group("posts", "g")
    ids = {bus.publish(_event(i)) for i in range(60)}
    seen: list[str] = []
    lock = threading.Lock()

    def consume(name: str) -> None:
        while True:
            got = bus.read("posts", "g", name, count=4)
            if not got:
                return
            with lock:
                seen.extend(m.id for m in got)

    threads = [threading.Thread(target=consume, args=(f"c{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(ids)  # each exactly once


def test_malformed_messages_are_acked_not_delivered(bus: SqlEventBus, engine: Engine) -> None:
    bus.ensure_group("posts", "g")
    with engine.begin() as connection:
        connection.execute(
            sa.insert(schema.bus_messages).values(stream="posts", data="{}", created_at=T0)
        )
    good = bus.publish(_event(1))
    got = bus.read("posts", "g", "c", 10)
    assert [m.id for m in got] == [good]
    assert bus.pending_count("posts", "g") == 1


def test_trim_keeps_newest(engine: Engine, clock: ManualClock) -> None:
    bus = SqlEventBus(engine, now=clock.now, maxlen=3, trim_every=1)
    bus.ensure_group("posts", "g")
    bus.read("posts", "g", "c", 10)
    ids = [bus.publish(_event(i)) for i in range(6)]
    got = bus.read("posts", "g", "c", 10)
    assert [m.id for m in got] == ids[-3:]
    assert bus.trim("posts") == 0


def test_outbox_relays_into_the_bus_on_the_same_database(engine: Engine) -> None:
    """Embedded mode: the relay publishes into the SQL bus of the same SQLite file without
    deadlocking on its own write lock."""
    from serving.social.storage.sql import SqlMetadataStore

    store = SqlMetadataStore(engine)
    bus = SqlEventBus(engine)
    bus.ensure_group("graph", "fanout")
    with store.transaction() as tx:
        for i in range(3):
            tx.add_outbox(_event(i, "graph"))
    assert store.relay_outbox(bus.publish) == 3
    got = bus.read("graph", "fanout", "c", 10)
    assert [m.event for m in got] == [_event(i, "graph") for i in range(3)]
