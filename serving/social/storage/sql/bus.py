"""The event bus on SQL tables (the embedded :class:`EventBus`): ``bus_messages`` holds each
stream's messages, ``bus_groups`` each consumer group's read position, ``bus_pending`` the
messages delivered to a group's consumers and not yet acked.

Semantics follow Redis Streams consumer groups (and
:class:`~serving.social.storage.redis.bus.RedisEventBus`): every group sees every message; a
message read by a consumer stays pending until acked; :meth:`SqlEventBus.reclaim` hands pending
messages idle for long enough to another consumer and counts the delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.social.domain import Event, Message, event_from_json, event_to_json
from serving.social.storage.checks import at_least_one
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import EveryNth, chunks, upsert_insert

log = logging.getLogger(__name__)


class SqlEventBus:
    """:class:`~serving.social.storage.interfaces.EventBus` on a migrated database.

    ``now`` is the clock pending messages' idle time is measured on (a manual one in tests);
    a blocking :meth:`read` wakes at once on a :meth:`publish` of this process and otherwise
    re-reads the table (for publishers in other processes) after ``poll_interval_s``, doubling
    up to ``max_poll_s`` (and staying there across reads until one finds messages), until
    ``block_ms`` has passed. Every ``trim_every``-th publish to a
    stream deletes its messages older than its newest ``maxlen`` (like ``XADD MAXLEN ~``);
    pending entries of trimmed messages are dropped by :meth:`reclaim`. Malformed messages are
    logged and acked, never handed out. :meth:`read` creates a missing group, as
    :meth:`ensure_group` would.
    """

    def __init__(
        self,
        engine: Engine,
        now: Callable[[], float] = time.time,
        poll_interval_s: float = 0.05,
        *,
        max_poll_s: float = 1.0,
        maxlen: int = 1_000_000,
        trim_every: int = 1_000,
    ) -> None:
        self.engine = engine
        self._now = now
        self.poll_interval_s = max(0.001, float(poll_interval_s))
        self.max_poll_s = max(self.poll_interval_s, float(max_poll_s))
        self._published = threading.Condition()
        self._publishes = 0
        # per (stream, group): the re-read interval an idle blocking read has backed off to,
        # kept across reads so a consumer that blocks again and again stays backed off
        self._idle_poll: dict[tuple[str, str], float] = {}
        self.maxlen = at_least_one(maxlen, "maxlen")
        self._trim_due = EveryNth(trim_every)
        self._closed = threading.Event()
        self._dialect = engine.dialect.name

    # --- writing -------------------------------------------------------------------------------

    def publish(self, event: Event) -> str:
        """Appends ``event`` to stream ``event.stream``; returns the message id."""
        statement = (
            sa.insert(s.bus_messages)
            .values(stream=event.stream, data=event_to_json(event).decode(), created_at=self._now())
            .returning(s.bus_messages.c.id)
        )
        trim = self._trim_due()
        with self.engine.begin() as connection:
            message_id = connection.execute(statement).scalar_one()
            if trim:
                self._trim(connection, event.stream)
        with self._published:
            self._publishes += 1
            self._published.notify_all()
        return str(message_id)

    def _trim(self, connection: sa.Connection, stream: str) -> int:
        m = s.bus_messages.c
        newer = s.bus_messages.alias("newer")
        cutoff = (
            sa.select(newer.c.id)
            .where(newer.c.stream == stream)
            .order_by(newer.c.id.desc())
            .limit(1)
            .offset(self.maxlen - 1)
            .scalar_subquery()
        )
        result = connection.execute(
            sa.delete(s.bus_messages).where(m.stream == stream, m.id < cutoff)
        )
        return int(result.rowcount)

    def trim(self, stream: str) -> int:
        """Deletes the messages of ``stream`` older than its newest ``maxlen``; returns how
        many."""
        with self.engine.begin() as connection:
            return self._trim(connection, stream)

    def ensure_group(self, stream: str, group: str) -> None:
        """Creates ``group`` (reading from the stream's start) if missing."""
        with self.engine.begin() as connection:
            self._ensure_group(connection, stream, group)

    def _ensure_group(self, connection: sa.Connection, stream: str, group: str) -> None:
        connection.execute(
            upsert_insert(self._dialect, s.bus_groups)
            .values(stream=stream, group_name=group, last_id=0)
            .on_conflict_do_nothing(index_elements=["stream", "group_name"])
        )

    # --- reading -------------------------------------------------------------------------------

    def _decode(
        self, connection: sa.Connection, stream: str, group: str, rows: Sequence[Any]
    ) -> list[Message]:
        """Messages from rows ``(id, data, deliveries)``; malformed ones are logged and acked."""
        messages: list[Message] = []
        bad: list[int] = []
        for message_id, data, deliveries in rows:
            try:
                event = event_from_json(data)
            except (ValueError, TypeError) as error:
                log.error(
                    "bus: dropping malformed message %s on stream %r (group %r), acked so it "
                    "is not redelivered: %s",
                    message_id,
                    stream,
                    group,
                    error,
                )
                bad.append(int(message_id))
                continue
            messages.append(Message(stream, str(message_id), event, int(deliveries)))
        if bad:
            self._ack(connection, stream, group, bad)
        return messages

    def _read_once(self, stream: str, group: str, consumer: str, count: int) -> list[Message]:
        g, m = s.bus_groups.c, s.bus_messages.c
        with self.engine.begin() as connection:
            position = (
                sa.select(g.last_id).where(g.stream == stream, g.group_name == group)
            ).with_for_update()
            last_id = connection.execute(position).scalar()
            if last_id is None:
                self._ensure_group(connection, stream, group)
                last_id = connection.execute(position).scalar_one()
            rows = connection.execute(
                sa.select(m.id, m.data)
                .where(m.stream == stream, m.id > last_id)
                .order_by(m.id)
                .limit(count)
            ).all()
            if not rows:
                return []
            now = self._now()
            connection.execute(
                sa.update(s.bus_groups)
                .where(g.stream == stream, g.group_name == group)
                .values(last_id=rows[-1].id)
            )
            connection.execute(
                upsert_insert(self._dialect, s.bus_pending).on_conflict_do_nothing(
                    index_elements=["stream", "group_name", "message_id"]
                ),
                [
                    {
                        "stream": stream,
                        "group_name": group,
                        "message_id": row.id,
                        "consumer": consumer,
                        "delivered_at": now,
                        "deliveries": 1,
                    }
                    for row in rows
                ],
            )
            return self._decode(connection, stream, group, [(r.id, r.data, 1) for r in rows])

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int = 0
    ) -> list[Message]:
        """Up to ``count`` new messages for ``group``, now pending on ``consumer`` until acked;
        polls for up to ``block_ms`` when none are there."""
        if count <= 0:
            return []
        deadline = time.monotonic() + max(0, block_ms) / 1000.0
        idle_key = (stream, group)
        poll = self._idle_poll.get(idle_key, self.poll_interval_s)
        while True:
            with self._published:
                seen = self._publishes
            messages = self._read_once(stream, group, consumer, count)
            if messages:
                self._idle_poll.pop(idle_key, None)
                return messages
            if block_ms <= 0 or self._closed.is_set():
                return messages
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            with self._published:
                self._published.wait_for(
                    lambda seen=seen: self._publishes != seen or self._closed.is_set(),
                    min(poll, left),
                )
            if self._closed.is_set():
                return []
            poll = min(poll * 2, self.max_poll_s)
            self._idle_poll[idle_key] = poll

    def _ack(self, connection: sa.Connection, stream: str, group: str, ids: Sequence[int]) -> None:
        p = s.bus_pending.c
        for chunk in chunks(list(ids)):
            connection.execute(
                sa.delete(s.bus_pending).where(
                    p.stream == stream, p.group_name == group, p.message_id.in_(chunk)
                )
            )

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """Acknowledges ``ids``: they leave the group's pending list."""
        if not ids:
            return
        numbers = [int(i) for i in ids]
        with self.engine.begin() as connection:
            self._ack(connection, stream, group, numbers)

    def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Message]:
        """Up to ``count`` pending messages idle for at least ``min_idle_ms``, oldest id first,
        now pending on ``consumer`` with ``deliveries`` incremented. Pending entries whose
        message was trimmed away are dropped."""
        if count <= 0:
            return []
        p, m = s.bus_pending.c, s.bus_messages.c
        now = self._now()
        idle_before = now - max(0, min_idle_ms) / 1000.0
        with self.engine.begin() as connection:
            candidates = (
                sa.select(p.message_id, p.deliveries)
                .where(p.stream == stream, p.group_name == group, p.delivered_at <= idle_before)
                .order_by(p.message_id)
                .limit(count)
            )
            if self._dialect == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            claimed = connection.execute(candidates).all()
            if not claimed:
                return []
            ids = [int(row.message_id) for row in claimed]
            deliveries = {int(row.message_id): int(row.deliveries) + 1 for row in claimed}
            connection.execute(
                sa.update(s.bus_pending)
                .where(p.stream == stream, p.group_name == group, p.message_id.in_(ids))
                .values(consumer=consumer, delivered_at=now, deliveries=p.deliveries + 1)
            )
            data = dict(
                connection.execute(
                    sa.select(m.id, m.data).where(m.stream == stream, m.id.in_(ids))
                ).all()
            )
            gone = [i for i in ids if i not in data]
            if gone:
                self._ack(connection, stream, group, gone)
            rows = [(i, data[i], deliveries[i]) for i in ids if i in data]
            return self._decode(connection, stream, group, rows)

    def pending_count(self, stream: str, group: str) -> int:
        """Messages delivered to ``group`` and not yet acked (0 for an unknown group)."""
        p = s.bus_pending.c
        statement = (
            sa.select(sa.func.count())
            .select_from(s.bus_pending)
            .where(p.stream == stream, p.group_name == group)
        )
        with self.engine.begin() as connection:
            return int(connection.execute(statement).scalar_one())

    def close(self) -> None:
        """Wakes and ends blocking reads; the engine is left to its owner."""
        self._closed.set()
        with self._published:
            self._published.notify_all()
