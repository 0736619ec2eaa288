"""SQL implementations of the state production keeps in Redis: pushed timelines
(:class:`SqlTimelineStore`), story trays (:class:`SqlStoryCache`), a key-value cache with expiry
(:class:`SqlKeyValueCache`) and token-bucket rate limits (:class:`SqlRateLimiter`).

Embedded mode runs them on the SQLite file of the metadata store; they work on any engine made by
:func:`~serving.social.storage.sql.engine.make_engine` (PostgreSQL included) whose database is
migrated. Every method is one short transaction (``BEGIN IMMEDIATE`` on SQLite).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.social.domain import Story
from serving.social.storage.checks import at_least_one
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import EveryNth, chunks, upsert_insert

#: Rows per executemany batch of an insert.
INSERT_BATCH = 5_000

#: Below every post id: the visibility floor of a timeline shorter than its cap.
_NO_CUTOFF = -(2**62)


class SqlTimelineStore:
    """Pushed timelines as rows ``(owner_id, post_id)``, newest = largest post id; built marks
    in ``timeline_built``.

    Only the newest ``cap`` rows of a timeline are visible (:meth:`page` reads above the
    ``cap``-th newest post id). Trimming the rows below that costs a scan of ``cap`` index
    entries per timeline, so a push to more than ``exact_trim_max`` timelines trims each with
    probability ``1 / trim_every`` only: a timeline then holds about ``trim_every`` invisible
    rows past its cap on average. Every other write trims exactly, and :meth:`remove` trims the
    touched timelines before deleting, so what :meth:`page` returns is always exactly what an
    eagerly trimmed timeline (the Redis adapter's) would hold.
    """

    def __init__(
        self, engine: Engine, cap: int, *, exact_trim_max: int = 256, trim_every: int = 8
    ) -> None:
        self.engine = engine
        self.cap = at_least_one(cap, "timeline cap")
        self.exact_trim_max = int(exact_trim_max)
        self.trim_every = at_least_one(trim_every, "trim_every")
        self._random = random.Random()
        t = s.timeline
        self._trim = sa.delete(t).where(
            t.c.owner_id == sa.bindparam("owner"),
            t.c.post_id < self._cutoff(sa.bindparam("owner")),
        )
        self._add = (
            upsert_insert(engine.dialect.name, t)
            .values(owner_id=sa.bindparam("o"), post_id=sa.bindparam("p"))
            .on_conflict_do_nothing(index_elements=["owner_id", "post_id"])
        )

    def _cutoff(self, owner: Any) -> Any:
        """The ``cap``-th newest post id of ``owner``'s timeline (NULL when shorter)."""
        newer = s.timeline.alias("newer")
        return (
            sa.select(newer.c.post_id)
            .where(newer.c.owner_id == owner)
            .order_by(newer.c.post_id.desc())
            .limit(1)
            .offset(self.cap - 1)
            .scalar_subquery()
        )

    def _add_rows(self, connection: sa.Connection, rows: list[dict[str, int]]) -> None:
        for start in range(0, len(rows), INSERT_BATCH):
            connection.execute(self._add, rows[start : start + INSERT_BATCH])

    def _trim_owners(self, connection: sa.Connection, owner_ids: Sequence[int]) -> None:
        for chunk in chunks(owner_ids, INSERT_BATCH):
            connection.execute(self._trim, [{"owner": owner} for owner in chunk])

    def push(self, post_id: int, owner_ids: Sequence[int]) -> None:
        """Adds one post to many timelines and trims them to ``cap`` (idempotent)."""
        owners = list(dict.fromkeys(int(o) for o in owner_ids))
        if not owners:
            return
        post = int(post_id)
        if len(owners) <= self.exact_trim_max:
            trim = owners
        else:
            chance = 1.0 / self.trim_every
            trim = [owner for owner in owners if self._random.random() < chance]
        with self.engine.begin() as connection:
            self._add_rows(connection, [{"o": owner, "p": post} for owner in owners])
            self._trim_owners(connection, trim)

    def push_many(self, owner_id: int, post_ids: Sequence[int]) -> None:
        """Adds many posts to one timeline (backfill) and trims it (idempotent); only the newest
        ``cap`` of ``post_ids`` can survive, so only those are written."""
        newest = sorted({int(p) for p in post_ids})[-self.cap :]
        if not newest:
            return
        owner = int(owner_id)
        with self.engine.begin() as connection:
            self._add_rows(connection, [{"o": owner, "p": post} for post in newest])
            self._trim_owners(connection, [owner])

    def remove(self, owner_ids: Sequence[int], post_ids: Sequence[int]) -> None:
        """Removes ``post_ids`` from every owner's timeline (after trimming those timelines,
        so that no row past the cap becomes visible)."""
        if not owner_ids or not post_ids:
            return
        owners = list(dict.fromkeys(int(o) for o in owner_ids))
        t = s.timeline.c
        with self.engine.begin() as connection:
            self._trim_owners(connection, owners)
            for posts in chunks([int(p) for p in post_ids], 500):
                for chunk in chunks(owners):
                    connection.execute(
                        sa.delete(s.timeline).where(t.owner_id.in_(chunk), t.post_id.in_(posts))
                    )

    def page(self, owner_id: int, limit: int, before_id: int | None = None) -> list[int]:
        """Post ids < ``before_id`` (all when None), newest first, at most ``limit``."""
        if limit <= 0:
            return []
        t = s.timeline.c
        owner = int(owner_id)
        lowest = sa.func.coalesce(self._cutoff(owner), _NO_CUTOFF)
        statement = sa.select(t.post_id).where(t.owner_id == owner, t.post_id >= lowest)
        if before_id is not None:
            statement = statement.where(t.post_id < int(before_id))
        statement = statement.order_by(t.post_id.desc()).limit(int(limit))
        with self.engine.begin() as connection:
            return [int(p) for p in connection.execute(statement).scalars()]

    def is_built(self, owner_id: int) -> bool:
        """Whether :meth:`mark_built` was called for the owner since the last :meth:`drop`."""
        statement = sa.select(s.timeline_built.c.owner_id).where(
            s.timeline_built.c.owner_id == int(owner_id)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def mark_built(self, owner_id: int) -> None:
        """Marks the owner's timeline built."""
        statement = (
            upsert_insert(self.engine.dialect.name, s.timeline_built)
            .values(owner_id=int(owner_id))
            .on_conflict_do_nothing(index_elements=["owner_id"])
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def drop(self, owner_id: int) -> None:
        """Removes the timeline and its built mark."""
        self.drop_many([owner_id])

    def drop_many(self, owner_ids: Sequence[int]) -> None:
        """:meth:`drop` for many owners in one transaction."""
        owners = [int(o) for o in owner_ids]
        if not owners:
            return
        with self.engine.begin() as connection:
            for chunk in chunks(owners):
                connection.execute(sa.delete(s.timeline).where(s.timeline.c.owner_id.in_(chunk)))
                connection.execute(
                    sa.delete(s.timeline_built).where(s.timeline_built.c.owner_id.in_(chunk))
                )


class SqlStoryCache:
    """Story trays in ``story_tray`` (per author: story id, created_at, expires_at). Reads
    filter on the caller's ``now``; :meth:`remove` deletes the stories' tray rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, story: Story) -> None:
        """Adds ``story`` to its author's tray (again: updates its times)."""
        statement = upsert_insert(self.engine.dialect.name, s.story_tray).values(
            author_id=int(story.author_id),
            story_id=int(story.id),
            created_at=float(story.created_at),
            expires_at=float(story.expires_at),
        )
        statement = statement.on_conflict_do_update(
            index_elements=["author_id", "story_id"],
            set_={
                "created_at": statement.excluded.created_at,
                "expires_at": statement.excluded.expires_at,
            },
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def remove(self, stories: Sequence[Story]) -> None:
        """Removes ``stories`` from their trays."""
        if not stories:
            return
        tray = s.story_tray.c
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(s.story_tray).where(
                    tray.author_id == sa.bindparam("a"), tray.story_id == sa.bindparam("i")
                ),
                [{"a": int(story.author_id), "i": int(story.id)} for story in stories],
            )

    def active(
        self, author_ids: Sequence[int], now: float
    ) -> dict[int, list[tuple[int, float, float]]]:
        """``{author: [(story_id, created_at, expires_at), ...]}`` with ``expires_at > now``,
        oldest first, only for authors that have at least one active story."""
        tray = s.story_tray.c
        result: dict[int, list[tuple[int, float, float]]] = {}
        with self.engine.begin() as connection:
            for chunk in chunks([int(a) for a in author_ids]):
                statement = (
                    sa.select(tray.author_id, tray.story_id, tray.created_at, tray.expires_at)
                    .where(tray.author_id.in_(chunk), tray.expires_at > float(now))
                    .order_by(tray.author_id, tray.created_at, tray.story_id)
                )
                for author, story_id, created_at, expires_at in connection.execute(statement):
                    result.setdefault(int(author), []).append(
                        (int(story_id), float(created_at), float(expires_at))
                    )
        return result

    def is_built(self) -> bool:
        """Always True: these trays live in the database file with the stories themselves, so
        they are never lost without the stories (the outbox re-adds one whose write after
        the commit did not happen)."""
        return True

    def mark_built(self) -> None:
        """Nothing to mark (see :meth:`is_built`)."""


class SqlKeyValueCache:
    """Values with an expiry time in ``kv_cache``. Expired entries are invisible; :meth:`get`
    deletes the one it finds expired, and every ``purge_every``-th :meth:`set` deletes up to
    ``purge_batch`` expired entries. ``now`` is the clock expiry is measured on."""

    def __init__(
        self,
        engine: Engine,
        now: Callable[[], float] = time.time,
        *,
        purge_every: int = 1_000,
        purge_batch: int = 1_000,
    ) -> None:
        self.engine = engine
        self._now = now
        self._purge_due = EveryNth(purge_every)
        self._purge_batch = max(1, int(purge_batch))

    def get(self, key: str) -> bytes | None:
        """The value, or None when missing or expired."""
        kv = s.kv_cache.c
        now = self._now()
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(kv.value, kv.expires_at).where(kv.key == key)
            ).first()
            if row is None:
                return None
            if row.expires_at <= now:
                connection.execute(sa.delete(s.kv_cache).where(kv.key == key, kv.expires_at <= now))
                return None
            return bytes(row.value)

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Stores ``value`` for ``ttl_s`` seconds; ``ttl_s`` <= 0 deletes ``key`` instead."""
        if ttl_s <= 0:
            self.delete(key)
            return
        now = self._now()
        statement = upsert_insert(self.engine.dialect.name, s.kv_cache).values(
            key=key, value=bytes(value), expires_at=now + float(ttl_s)
        )
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": statement.excluded.value, "expires_at": statement.excluded.expires_at},
        )
        purge = self._purge_due()
        with self.engine.begin() as connection:
            connection.execute(statement)
            if purge:
                self._purge(connection, now)

    def _purge(self, connection: sa.Connection, now: float) -> int:
        kv = s.kv_cache.c
        expired = (
            sa.select(kv.key)
            .where(kv.expires_at <= now)
            .order_by(kv.expires_at)
            .limit(self._purge_batch)
        )
        result = connection.execute(sa.delete(s.kv_cache).where(kv.key.in_(expired)))
        return int(result.rowcount)

    def purge_expired(self) -> int:
        """Deletes up to ``purge_batch`` expired entries now; returns how many."""
        with self.engine.begin() as connection:
            return self._purge(connection, self._now())

    def delete(self, key: str) -> None:
        """Removes ``key`` (no error if missing)."""
        with self.engine.begin() as connection:
            connection.execute(sa.delete(s.kv_cache).where(s.kv_cache.c.key == key))


class SqlRateLimiter:
    """Token buckets in ``rate_buckets`` (``tokens`` at ``updated_at``), read and written in one
    transaction that holds the bucket's lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT .. FOR
    UPDATE`` on PostgreSQL), so concurrent callers never take more tokens than there are.

    Semantics match :class:`~serving.social.storage.redis.ratelimit.RedisRateLimiter`: time is the
    caller's ``now``, a bucket never refills backwards, a missing bucket starts full, a grant
    short of ``cost`` by at most a microsecond of refill is allowed (float rounding of unix
    times), and with ``refill_per_s`` <= 0 an empty bucket's wait is ``math.inf``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        b = s.rate_buckets.c
        self._create = (
            upsert_insert(engine.dialect.name, s.rate_buckets)
            .values(key=sa.bindparam("k"), tokens=sa.bindparam("t"), updated_at=sa.bindparam("u"))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        self._lock_row = (
            sa.select(b.tokens, b.updated_at).where(b.key == sa.bindparam("k")).with_for_update()
        )
        self._write = (
            sa.update(s.rate_buckets)
            .where(b.key == sa.bindparam("k"))
            .values(tokens=sa.bindparam("t"), updated_at=sa.bindparam("u"))
        )

    def acquire(
        self, key: str, capacity: float, refill_per_s: float, now: float, cost: float = 1.0
    ) -> float:
        """Takes ``cost`` tokens and returns 0.0, or takes nothing and returns the seconds until
        ``cost`` tokens will be there. Raises ``ValueError`` when ``cost`` exceeds ``capacity``
        or either is not positive."""
        if capacity <= 0 or cost <= 0:
            raise ValueError(f"capacity and cost must be > 0, got {capacity!r} and {cost!r}")
        if cost > capacity:
            raise ValueError(f"cost {cost!r} exceeds the bucket capacity {capacity!r}")
        capacity, rate, now, cost = float(capacity), float(refill_per_s), float(now), float(cost)
        with self.engine.begin() as connection:
            connection.execute(self._create, {"k": key, "t": capacity, "u": now})
            tokens, updated_at = connection.execute(self._lock_row, {"k": key}).one()
            tokens, updated_at = float(tokens), float(updated_at)
            if now > updated_at:
                tokens = min(capacity, tokens + (now - updated_at) * max(rate, 0.0))
                updated_at = now
            wait = 0.0
            if tokens >= cost or (rate > 0 and (cost - tokens) / rate <= 1e-6):
                tokens = max(0.0, tokens - cost)
            elif rate > 0:
                wait = (cost - tokens) / rate
            else:
                wait = math.inf
            connection.execute(self._write, {"k": key, "t": tokens, "u": updated_at})
        return wait
