"""The logs of writes: the interaction log the rankers learn from (table ``events``), the
transactional outbox (table ``outbox``) and the idempotency keys of writes (table
``idempotency_keys``, :class:`IdempotencyTx`): appending inside a transaction
(:class:`EventsTx`), and reading the log, relaying and purging the outbox on the store's engine
(:class:`EventLog`)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.social.domain import (
    Event,
    FollowChange,
    IdempotencyKey,
    IdempotentAnswer,
    InteractionEvent,
    event_from_json,
    event_to_json,
)
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import chunks
from serving.social.storage.sql.metadata.base import R, TxBase, records


class EventsTx(TxBase):
    """The event-log and outbox methods of
    :class:`~serving.social.storage.interfaces.MetadataTx`."""

    def append_events(self, events: Sequence[InteractionEvent]) -> int:
        """Appends to the event log, skipping event ids already there; returns rows added."""
        if not events:
            return 0
        rows = [dataclasses.asdict(e) for e in events]
        for row in rows:
            del row["seq"]  # assigned by the store
        statement = (
            self._insert(s.events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(s.events.c.seq)
        )
        return len(self._run(statement, rows).all())

    #: set once this transaction queued an outbox event (the store then wakes waiting relays)
    outbox_added = False

    def add_outbox(self, event: Event) -> None:
        """Queues ``event`` for :meth:`EventLog.relay_outbox` (commits with the transaction)."""
        self.outbox_added = True
        self._run(
            sa.insert(s.outbox).values(
                event_id=event.id,
                stream=event.stream,
                kind=event.kind,
                payload=event_to_json(event).decode(),
                ts=event.ts,
            )
        )


class IdempotencyTx(TxBase):
    """The idempotency-key methods of :class:`~serving.social.storage.interfaces.MetadataTx`
    (table ``idempotency_keys``)."""

    def claim_idempotency_key(
        self, key: IdempotencyKey, scope: str, fingerprint: str, now: float
    ) -> IdempotentAnswer | None:
        """None when ``key`` is new (it is now taken by this transaction: a concurrent one
        with the same key waits for it on PostgreSQL, or is serialized behind it on SQLite);
        else the answer stored under it by a committed write."""
        claimed = self._insert_ignore(
            s.idempotency_keys,
            user_id=key.user_id,
            key=key.key,
            scope=scope,
            fingerprint=fingerprint,
            response="",
            created_at=now,
        )
        if claimed:
            return None
        k = s.idempotency_keys.c
        row = self._run(
            sa.select(k.scope, k.fingerprint, k.response).where(
                k.user_id == key.user_id, k.key == key.key
            )
        ).one()
        return IdempotentAnswer(row.scope, row.fingerprint, row.response)

    def store_idempotent_answer(self, key: IdempotencyKey, response: str) -> None:
        """Stores the answer of the write that claimed ``key`` in this transaction."""
        k = s.idempotency_keys.c
        self._run(
            sa.update(s.idempotency_keys)
            .where(k.user_id == key.user_id, k.key == key.key)
            .values(response=response)
        )

    def purge_idempotency_keys(self, before: float, limit: int = 10_000) -> int:
        """Deletes up to ``limit`` keys created before ``before``; returns how many."""
        k = s.idempotency_keys.c
        old = (
            sa.select(k.user_id, k.key)
            .where(k.created_at < before)
            .order_by(k.created_at)
            .limit(max(0, limit))
        )
        result = self._run(
            sa.delete(s.idempotency_keys).where(sa.tuple_(k.user_id, k.key).in_(old))
        )
        return int(result.rowcount)


class EventLog:
    """The :class:`~serving.social.storage.interfaces.MetadataStore` methods that work on the
    engine itself rather than in one caller's transaction: reading the event log, relaying and
    purging the outbox."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._relay_lock = threading.Lock()
        self._outbox_commits = 0
        self._outbox_changed = threading.Condition()

    def _outbox_committed(self) -> None:
        """Called after a transaction that queued outbox events committed: wakes
        :meth:`wait_for_outbox`."""
        with self._outbox_changed:
            self._outbox_commits += 1
            self._outbox_changed.notify_all()

    def wait_for_outbox(self, timeout_s: float, seen: int | None = None) -> int:
        """Waits up to ``timeout_s`` until a transaction of this process commits an outbox
        event after the count ``seen`` (default: now); returns the current count, to pass as
        ``seen`` next time (so a commit between two waits is not missed). Commits of other
        processes are not seen: a relay still polls, just less often."""
        with self._outbox_changed:
            start = self._outbox_commits if seen is None else seen
            self._outbox_changed.wait_for(lambda: self._outbox_commits != start, timeout_s)
            return self._outbox_commits

    def relay_outbox(self, publish: Callable[[Event], object], limit: int = 500) -> int:
        """Publishes up to ``limit`` unpublished outbox events in ``seq`` order and marks them
        published; returns the count. If ``publish`` raises, the events published before it
        are marked, the rest stay for the next relay, and the exception propagates.

        PostgreSQL: the rows are locked ``FOR UPDATE SKIP LOCKED`` while publishing, so relays
        run side by side without publishing an event twice (short of a crash). SQLite: publishing
        happens outside any transaction (``publish`` may itself write to this database, e.g. the
        SQL event bus) and relays of one store take turns; relays in several processes may
        publish an event twice, which at-least-once delivery allows."""
        if limit <= 0:
            return 0
        o = s.outbox.c
        select_unpublished = (
            sa.select(o.seq, o.payload).where(o.published_at.is_(None)).order_by(o.seq).limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                locked = select_unpublished.with_for_update(skip_locked=True)
                rows = connection.execute(locked).all()
                return _publish_rows(connection, rows, publish)
        with self._relay_lock:
            with self.engine.begin() as connection:
                rows = connection.execute(select_unpublished).all()
            if not rows:
                return 0
            with self.engine.connect() as connection:
                return _publish_rows(connection, rows, publish)

    def purge_outbox(self, published_before: float, limit: int = 10_000) -> int:
        """Deletes up to ``limit`` outbox rows published before ``published_before`` (wall-clock
        unix seconds); returns how many. Unpublished rows are never touched."""
        o = s.outbox.c
        old = (
            sa.select(o.seq)
            .where(o.published_at.is_not(None), o.published_at < published_before)
            .order_by(o.seq)
            .limit(max(0, limit))
        )
        with self.engine.begin() as connection:
            result = connection.execute(sa.delete(s.outbox).where(o.seq.in_(old)))
            return int(result.rowcount)

    def iter_events(
        self, after_seq: int = 0, batch: int = 10_000
    ) -> Iterator[list[InteractionEvent]]:
        """The event log in ``seq`` order, in batches of at most ``batch`` (one short read
        transaction per batch)."""
        return self._batches(s.events, InteractionEvent, after_seq, batch)

    def iter_follow_log(
        self, after_seq: int = 0, batch: int = 10_000
    ) -> Iterator[list[FollowChange]]:
        """The follow log (every follow and unfollow) in ``seq`` order, in batches of at most
        ``batch`` (one short read transaction per batch)."""
        return self._batches(s.follow_log, FollowChange, after_seq, batch)

    def _batches(
        self, table: sa.Table, cls: type[R], after_seq: int, batch: int
    ) -> Iterator[list[R]]:
        """The rows of a ``seq``-keyed log table after ``after_seq``, as ``cls`` records."""
        seq = table.c.seq
        last = after_seq
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(
                    sa.select(table).where(seq > last).order_by(seq).limit(max(1, batch))
                ).all()
            if not rows:
                return
            last = rows[-1].seq
            yield records(cls, rows)


def _publish_rows(
    connection: sa.Connection, rows: Sequence[Any], publish: Callable[[Event], object]
) -> int:
    """Publishes ``rows`` in order, stopping at the first failure, marks those published and
    commits (also on failure, whose exception is then re-raised)."""
    done: list[int] = []
    error: BaseException | None = None
    for seq, payload in rows:
        try:
            publish(event_from_json(payload))
        except BaseException as raised:
            error = raised
            break
        done.append(seq)
    published_at = time.time()
    for chunk in chunks(done):
        connection.execute(
            sa.update(s.outbox).where(s.outbox.c.seq.in_(chunk)).values(published_at=published_at)
        )
    connection.commit()
    if error is not None:
        raise error
    return len(done)
