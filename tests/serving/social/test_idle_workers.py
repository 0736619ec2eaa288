"""Idle workers do not poll: the relay sleeps until an outbox commit of the process wakes it,
a consumer until a publish wakes its blocking read, and an idle embedded server runs a few
statements a second instead of a hundred (the CPU figure itself is a benchmark's, not a test's)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from serving.social.domain import Event
from serving.social.workers import Workers


def _in_thread(target, *args):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(target(*args)), daemon=True)
    thread.start()
    return thread, result


def test_an_outbox_commit_wakes_a_waiting_relay(backend) -> None:
    metadata = backend.storage.metadata
    seen = metadata.wait_for_outbox(0.0)
    thread, result = _in_thread(metadata.wait_for_outbox, 60.0, seen)
    with metadata.transaction() as tx:
        tx.add_outbox(Event("posts", "post.created", {"post_id": 1, "author_id": 1}, ts=0.0))
    thread.join(10)
    assert not thread.is_alive() and result == [seen + 1]
    # a transaction without outbox events wakes nobody
    thread, result = _in_thread(metadata.wait_for_outbox, 0.3, seen + 1)
    with metadata.transaction() as tx:
        tx.get_user(1)
    thread.join(10)
    assert result == [seen + 1]


@pytest.mark.parametrize("storage_kind", ["embedded"])
def test_a_publish_wakes_a_blocked_read(backend) -> None:
    bus = backend.storage.bus
    bus.ensure_group("posts", "waker")
    thread, result = _in_thread(bus.read, "posts", "waker", "c1", 10, 60_000)
    time.sleep(0.2)  # the read is blocked (nothing to read yet)
    bus.publish(Event("posts", "post.created", {"post_id": 7, "author_id": 1}, ts=0.0))
    thread.join(10)
    assert not thread.is_alive()
    assert [m.event.payload["post_id"] for m in result[0]] == [7]


@pytest.mark.parametrize("storage_kind", ["embedded"])
def test_an_idle_embedded_server_barely_queries(backend) -> None:
    statements: list[int] = []
    engine = backend.storage.metadata.engine

    def count(*args: object) -> None:
        statements.append(1)

    sa.event.listen(engine, "before_cursor_execute", count)
    workers = Workers(backend, consumer="idle")
    workers.start()
    try:
        time.sleep(3.0)  # the back-off reaches its longest wait
        statements.clear()
        time.sleep(4.0)
        idle = len(statements)
    finally:
        workers.stop()
        sa.event.remove(engine, "before_cursor_execute", count)
    # 4 consumers (a reclaim and a read of 2-3 statements each) and the relay, each waking
    # every idle_wait_max_s (2 s): about 70 in 4 s; polling every 0.05-0.2 s ran about 200
    assert idle <= 110, idle
