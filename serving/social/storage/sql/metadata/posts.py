"""Posts and the media they (and stories) show (tables ``posts`` and ``media``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, Unpack

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from serving.social.domain import Media, MediaStatus, Post
from serving.social.storage.interfaces import MediaChanges, PostFields
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import chunks
from serving.social.storage.sql.metadata.base import TxBase, records

# Larger than any post id (ids are BIGSERIAL, far below 2**62 in practice).
NO_ID_LIMIT = 2**62


@functools.cache
def _lateral_statement() -> sa.Select[Any]:
    """PostgreSQL's newest-posts-per-author query, built once with bound parameters
    (``author_ids`` bigint[], ``per_author``, ``before_id``): one ``LATERAL`` index scan of
    ``(author_id, id)`` per author over ``unnest(:author_ids)``. The text never changes, so
    SQLAlchemy compiles it once and psycopg prepares it once."""
    authors = (
        sa.func.unnest(sa.bindparam("author_ids", type_=postgresql.ARRAY(sa.BigInteger)))
        .table_valued("aid")
        .render_derived("authors")
    )
    p = s.posts.c
    newest = (
        sa.select(s.posts)
        .where(
            p.author_id == authors.c.aid,
            p.deleted_at.is_(None),
            p.id < sa.bindparam("before_id", type_=sa.BigInteger),
        )
        .order_by(p.id.desc())
        .limit(sa.bindparam("per_author", type_=sa.Integer))
        .lateral("newest")
    )
    return (
        sa.select(*newest.c)
        .select_from(authors)
        .join(newest, sa.true())
        .order_by(newest.c.id.desc())
    )


def _window_statement(author_ids: list[int], limit: int, before_id: int | None) -> sa.Select[Any]:
    """SQLite's newest-posts-per-author query: ``ROW_NUMBER()`` over each author's posts."""
    p = s.posts.c
    rank = sa.func.row_number().over(partition_by=p.author_id, order_by=p.id.desc())
    inner = sa.select(s.posts, rank.label("rank")).where(
        p.author_id.in_(author_ids), p.deleted_at.is_(None)
    )
    if before_id is not None:
        inner = inner.where(p.id < before_id)
    ranked = inner.subquery("ranked")
    columns = [ranked.c[c.name] for c in s.posts.columns]
    return sa.select(*columns).where(ranked.c.rank <= limit).order_by(ranked.c.id.desc())


class PostsTx(TxBase):
    """The posts-and-media methods of :class:`~serving.social.storage.interfaces.MetadataTx`."""

    # posts ------------------------------------------------------------------------------------

    def create_post(self, author_id: int, now: float, **fields: Unpack[PostFields]) -> Post:
        """A new post (its id is larger than every earlier post's); the fields not given get
        the defaults of :class:`~serving.social.domain.Post`."""
        draft = dataclasses.asdict(Post(id=0, author_id=author_id, created_at=now, **fields))
        del draft["id"]
        return self._create(Post, s.posts, **draft)

    def get_post(self, post_id: int, include_deleted: bool = False) -> Post | None:
        """The post, or None (also when deleted, unless ``include_deleted``)."""
        p = s.posts.c
        statement = sa.select(s.posts).where(p.id == post_id)
        if not include_deleted:
            statement = statement.where(p.deleted_at.is_(None))
        return self._one(Post, statement)

    def get_posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        """The live (not deleted) ones among ``post_ids``."""
        live = s.posts.c.deleted_at.is_(None)
        return self._records_by_id(Post, "live_posts", s.posts, post_ids, live)

    def delete_post(self, post_id: int, now: float) -> bool:
        """Soft delete (sets ``deleted_at``); False if missing or already deleted."""
        p = s.posts.c
        result = self._run(
            sa.update(s.posts).where(p.id == post_id, p.deleted_at.is_(None)).values(deleted_at=now)
        )
        return result.rowcount > 0

    def recent_posts(
        self, author_ids: Sequence[int], limit_per_author: int, before_id: int | None = None
    ) -> list[Post]:
        """Each author's newest live posts (id < before_id when given), newest first overall.

        PostgreSQL: one ``LATERAL`` index scan of ``(author_id, id)`` per author; SQLite:
        ``ROW_NUMBER()`` over each author's posts."""
        if limit_per_author <= 0 or not author_ids:
            return []
        found: list[Post] = []
        for chunk in chunks(author_ids):
            if self._dialect == "postgresql":
                params = {
                    "author_ids": chunk,
                    "per_author": limit_per_author,
                    "before_id": before_id if before_id is not None else NO_ID_LIMIT,
                }
                rows = self._run(_lateral_statement(), params)
            else:
                rows = self._run(_window_statement(chunk, limit_per_author, before_id))
            found.extend(records(Post, rows))
        found.sort(key=lambda post: post.id, reverse=True)
        return found

    def posts_with_media(self, media_id: int) -> list[Post]:
        """The live posts showing media item ``media_id``, oldest first."""
        p = s.posts.c
        statement = (
            sa.select(s.posts).where(p.media_id == media_id, p.deleted_at.is_(None)).order_by(p.id)
        )
        return records(Post, self._run(statement))

    # media ------------------------------------------------------------------------------------

    def create_media(
        self, owner_id: int, kind: str, content_type: str, raw_key: str | None, now: float
    ) -> Media:
        """A new media row with status ``processing``."""
        return self._create(
            Media,
            s.media,
            owner_id=owner_id,
            kind=kind,
            status="processing",
            content_type=content_type,
            created_at=now,
            updated_at=now,
            raw_key=raw_key,
            renditions=(),
        )

    def get_media(self, media_id: int) -> Media | None:
        """The media row, or None."""
        return self._one(Media, sa.select(s.media).where(s.media.c.id == media_id))

    def get_media_many(self, media_ids: Sequence[int]) -> dict[int, Media]:
        """The existing media among ``media_ids`` by id."""
        return self._records_by_id(Media, "media", s.media, media_ids)

    def update_media(
        self, media_id: int, status: MediaStatus, now: float, **changes: Unpack[MediaChanges]
    ) -> None:
        """Sets status and ``updated_at``; each other field only when given (not None, not
        empty), so e.g. marking ready media ``deleted`` keeps its dimensions and renditions."""
        given: dict[str, Any] = {name: v for name, v in changes.items() if v is not None}
        if not given.get("renditions", True):
            del given["renditions"]  # none given: the stored ones stay
        statement = sa.update(s.media).where(s.media.c.id == media_id)
        self._run(statement.values(status=status, updated_at=now, **given))

    def mark_media_for_deletion(self, media_ids: Sequence[int], delete_after: float) -> None:
        """Sets ``delete_after`` on each of ``media_ids``."""
        for chunk in chunks(media_ids):
            self._run(
                sa.update(s.media).where(s.media.c.id.in_(chunk)).values(delete_after=delete_after)
            )
