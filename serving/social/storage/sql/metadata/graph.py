"""The social graph: who follows whom and who blocked whom (tables ``follows``, ``blocks``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa

from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import chunks
from serving.social.storage.sql.metadata.base import TxBase


class GraphTx(TxBase):
    """The follows-and-blocks methods of
    :class:`~serving.social.storage.interfaces.MetadataTx`."""

    def add_follow(self, follower_id: int, followee_id: int, now: float) -> bool:
        """True if created, False if it existed. A new follow is also logged (``follow_log``)."""
        created = self._insert_ignore(
            s.follows, follower_id=follower_id, followee_id=followee_id, created_at=now
        )
        if created:
            self._log_follow(follower_id, followee_id, True, now)
        return created

    def remove_follow(self, follower_id: int, followee_id: int, now: float | None = None) -> bool:
        """True if there was a follow to remove; the removal is logged at ``now`` (default: the
        wall clock)."""
        removed = self._delete(s.follows, follower_id=follower_id, followee_id=followee_id)
        if removed:
            self._log_follow(follower_id, followee_id, False, time.time() if now is None else now)
        return removed

    def _log_follow(self, follower_id: int, followee_id: int, following: bool, ts: float) -> None:
        self._run(
            sa.insert(s.follow_log).values(
                follower_id=follower_id, followee_id=followee_id, following=following, ts=ts
            )
        )

    def is_following(self, follower_id: int, followee_id: int) -> bool:
        """Whether ``follower_id`` follows ``followee_id``."""
        return self._exists(s.follows, follower_id=follower_id, followee_id=followee_id)

    def follower_count(self, user_id: int) -> int:
        """How many follow ``user_id``."""
        return self._count(s.follows, followee_id=user_id)

    def followee_count(self, user_id: int) -> int:
        """How many ``user_id`` follows."""
        return self._count(s.follows, follower_id=user_id)

    def follower_counts(self, user_ids: Sequence[int]) -> dict[int, int]:
        """Follower count of each of ``user_ids`` (0 included)."""
        f = s.follows.c
        counts = dict.fromkeys(user_ids, 0)
        for chunk in chunks(user_ids):
            rows = self._by_ids(
                "follower_counts",
                lambda m: (
                    sa.select(f.followee_id, sa.func.count())
                    .where(m(f.followee_id))
                    .group_by(f.followee_id)
                ),
                chunk,
            )
            counts.update((followee_id, int(count)) for followee_id, count in rows)
        return counts

    def followers_page(self, user_id: int, after_id: int, limit: int) -> list[tuple[int, float]]:
        """``(follower_id, last_active_at)`` with follower_id > after_id, ascending, <= limit."""
        f, u = s.follows.c, s.users.c
        statement = (
            sa.select(f.follower_id, u.last_active_at)
            .join_from(s.follows, s.users, u.id == f.follower_id)
            .where(f.followee_id == user_id, f.follower_id > after_id)
            .order_by(f.follower_id)
            .limit(max(0, limit))
        )
        return [(row[0], row[1]) for row in self._run(statement)]

    def followees(self, user_id: int) -> list[int]:
        """Ids ``user_id`` follows, ascending."""
        f = s.follows.c
        statement = sa.select(f.followee_id).where(f.follower_id == user_id).order_by(f.followee_id)
        return list(self._run(statement).scalars())

    def add_block(self, blocker_id: int, blocked_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        return self._insert_ignore(
            s.blocks, blocker_id=blocker_id, blocked_id=blocked_id, created_at=now
        )

    def remove_block(self, blocker_id: int, blocked_id: int) -> bool:
        """True if there was a block to remove."""
        return self._delete(s.blocks, blocker_id=blocker_id, blocked_id=blocked_id)

    def blocked_either_way(self, user_id: int) -> set[int]:
        """Ids of users this user blocked or was blocked by."""
        b = s.blocks.c
        statement = sa.union(
            sa.select(b.blocked_id.label("other")).where(b.blocker_id == user_id),
            sa.select(b.blocker_id.label("other")).where(b.blocked_id == user_id),
        )
        return set(self._run(statement).scalars())
