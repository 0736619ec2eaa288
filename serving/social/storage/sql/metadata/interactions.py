"""What users do to posts: likes, saves and comments (tables ``likes``, ``saves``,
``comments``), and their counts per post."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from serving.social.domain import Comment
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import chunks
from serving.social.storage.sql.metadata.base import TxBase, records

#: The tables :meth:`InteractionsTx.post_counts` counts, by the key it reports them under.
COUNTED = {"likes": s.likes, "comments": s.comments, "saves": s.saves}


def _post_counts_statement(match: Callable[[Any], Any]) -> Any:
    """The grouped counts of every :data:`COUNTED` table as one ``UNION ALL`` (one round trip):
    rows ``(kind, post_id, count)`` for the posts ``match(post_id)`` selects."""
    return sa.union_all(
        *(
            sa.select(sa.literal(kind).label("kind"), t.c.post_id, sa.func.count())
            .where(match(t.c.post_id))
            .group_by(t.c.post_id)
            for kind, t in COUNTED.items()
        )
    )


class InteractionsTx(TxBase):
    """The like, save and comment methods of
    :class:`~serving.social.storage.interfaces.MetadataTx`."""

    def add_like(self, user_id: int, post_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        return self._insert_ignore(s.likes, user_id=user_id, post_id=post_id, created_at=now)

    def add_save(self, user_id: int, post_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        return self._insert_ignore(s.saves, user_id=user_id, post_id=post_id, created_at=now)

    def remove_like(self, user_id: int, post_id: int) -> bool:
        """True if there was a like to remove."""
        return self._delete(s.likes, user_id=user_id, post_id=post_id)

    def remove_save(self, user_id: int, post_id: int) -> bool:
        """True if there was a save to remove."""
        return self._delete(s.saves, user_id=user_id, post_id=post_id)

    def add_comment(self, user_id: int, post_id: int, text: str, now: float) -> Comment:
        """A new comment."""
        return self._create(
            Comment, s.comments, post_id=post_id, user_id=user_id, text=text, created_at=now
        )

    def comments(self, post_id: int, after_id: int, limit: int) -> list[Comment]:
        """Comments with id > after_id, oldest first, at most ``limit``."""
        c = s.comments.c
        statement = (
            sa.select(s.comments)
            .where(c.post_id == post_id, c.id > after_id)
            .order_by(c.id)
            .limit(max(0, limit))
        )
        return records(Comment, self._run(statement))

    def post_counts(self, post_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """``{post_id: {"likes": n, "comments": n, "saves": n}}`` (zeros included)."""
        counts = {pid: dict.fromkeys(COUNTED, 0) for pid in post_ids}
        for chunk in chunks(post_ids):
            for kind, post_id, count in self._by_ids("post_counts", _post_counts_statement, chunk):
                counts[post_id][kind] = int(count)
        return counts
