"""The :class:`~serving.social.storage.interfaces.MetadataStore` on SQLAlchemy Core: SQLite in
embedded mode, PostgreSQL in production, the same code and schema for both.

Idempotent writes (follows, blocks, likes, saves, story views, event appends, usernames) use
``INSERT .. ON CONFLICT DO NOTHING RETURNING`` rather than catching ``IntegrityError``, which
would abort the surrounding PostgreSQL transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from serving.social.domain import (
    Comment,
    Conflict,
    Event,
    InteractionEvent,
    Media,
    MediaStatus,
    Post,
    Rendition,
    Story,
    User,
    event_from_json,
    event_to_json,
)
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import chunks, upsert_insert
from serving.social.storage.sql.engine import (
    READ_ONLY,
    current_revision,
    head_revision,
    make_engine,
    migrate,
)

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


#: PostgreSQL statements of :meth:`SqlMetadataTx._by_ids`, built once per name.
_PG_BY_IDS: dict[str, Any] = {}


# --- rows to records ------------------------------------------------------------------------------


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        created_at=row.created_at,
        last_active_at=row.last_active_at,
        country=row.country,
        age_bucket=row.age_bucket,
    )


def _post(row: Any) -> Post:
    return Post(
        id=row.id,
        author_id=row.author_id,
        created_at=row.created_at,
        caption=row.caption,
        media_id=row.media_id,
        media_type=row.media_type,
        topic=row.topic,
        deleted_at=row.deleted_at,
    )


def _renditions_to_json(renditions: Sequence[Rendition]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in renditions], separators=(",", ":"))


def _renditions_from_json(text: str | None) -> tuple[Rendition, ...]:
    if not text:
        return ()
    return tuple(Rendition(**item) for item in json.loads(text))


def _media(row: Any) -> Media:
    return Media(
        id=row.id,
        owner_id=row.owner_id,
        kind=row.kind,
        status=row.status,
        content_type=row.content_type,
        created_at=row.created_at,
        updated_at=row.updated_at,
        raw_key=row.raw_key,
        reason=row.reason,
        width=row.width,
        height=row.height,
        thumbhash=row.thumbhash,
        renditions=_renditions_from_json(row.renditions),
        delete_after=row.delete_after,
    )


def _story(row: Any) -> Story:
    return Story(
        id=row.id,
        author_id=row.author_id,
        media_id=row.media_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def _comment(row: Any) -> Comment:
    return Comment(
        id=row.id,
        post_id=row.post_id,
        user_id=row.user_id,
        text=row.text,
        created_at=row.created_at,
    )


def _interaction(row: Any) -> InteractionEvent:
    return InteractionEvent(
        event_id=row.event_id,
        kind=row.kind,
        user_id=row.user_id,
        post_id=row.post_id,
        author_id=row.author_id,
        ts=row.ts,
        dwell_ms=row.dwell_ms,
        seq=row.seq,
    )


# --- the transaction -----------------------------------------------------------------------------


class SqlMetadataTx:
    """Every :class:`~serving.social.storage.interfaces.MetadataTx` method on one open
    connection inside a transaction; valid only inside :meth:`SqlMetadataStore.transaction`."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self._dialect = connection.dialect.name

    def _run(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        return self.connection.execute(statement, params)

    def _by_ids(
        self, name: str, build: Callable[[Callable[[Any], Any]], Any], ids: list[int]
    ) -> sa.CursorResult[Any]:
        """Runs the statement ``build(match)`` where ``match(column)`` restricts ``column`` to
        ``ids``. On PostgreSQL the statement is built once per ``name`` with
        ``column = ANY(:ids)`` and reused (compiled and prepared once); on SQLite it is built
        with a plain ``IN`` each time."""
        if self._dialect == "postgresql":
            statement = _PG_BY_IDS.get(name)
            if statement is None:
                ids_param = sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger))
                statement = _PG_BY_IDS.setdefault(name, build(lambda c: c == sa.any_(ids_param)))
            return self._run(statement, {"ids": ids})
        return self._run(build(lambda c: c.in_(ids)))

    def _insert(self, table: sa.Table) -> Any:
        return upsert_insert(self._dialect, table)

    def _insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> bool:
        """Inserts one row unless its primary key exists; True if it was inserted."""
        pk = [c.name for c in table.primary_key.columns]
        statement = (
            self._insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=pk)
            .returning(*table.primary_key.columns)
        )
        return self._run(statement).first() is not None

    # users and tokens -------------------------------------------------------------------------

    def create_user(
        self, username: str, password_hash: str, now: float, country: str = "", age_bucket: str = ""
    ) -> User:
        """A new user; :class:`Conflict` (field ``username``) if the name is taken."""
        statement = (
            self._insert(s.users)
            .values(
                username=username,
                password_hash=password_hash,
                created_at=now,
                last_active_at=now,
                country=country,
                age_bucket=age_bucket,
            )
            .on_conflict_do_nothing(index_elements=["username"])
            .returning(s.users.c.id)
        )
        user_id = self._run(statement).scalar()
        if user_id is None:
            raise Conflict(f"username {username!r} is taken", field="username")
        return User(user_id, username, now, now, country, age_bucket)

    def get_user(self, user_id: int) -> User | None:
        """The user, or None."""
        row = self._run(sa.select(s.users).where(s.users.c.id == user_id)).first()
        return _user(row) if row is not None else None

    def get_users(self, user_ids: Sequence[int]) -> dict[int, User]:
        """The existing users among ``user_ids`` by id."""
        found: dict[int, User] = {}
        for chunk in chunks(user_ids):
            rows = self._by_ids("users", lambda m: sa.select(s.users).where(m(s.users.c.id)), chunk)
            for row in rows:
                found[row.id] = _user(row)
        return found

    def user_credentials(self, username: str) -> tuple[User, str] | None:
        """The user and their stored password hash."""
        row = self._run(sa.select(s.users).where(s.users.c.username == username)).first()
        return (_user(row), row.password_hash) if row is not None else None

    def touch_user(self, user_id: int, now: float) -> None:
        """Sets ``last_active_at``."""
        self._run(sa.update(s.users).where(s.users.c.id == user_id).values(last_active_at=now))

    def add_token(
        self, user_id: int, token_hash: str, created_at: float, expires_at: float
    ) -> None:
        """Stores a token hash."""
        self._run(
            sa.insert(s.tokens).values(
                token_hash=token_hash,
                user_id=user_id,
                created_at=created_at,
                expires_at=expires_at,
            )
        )

    def user_for_token(self, token_hash: str, now: float) -> int | None:
        """The user id of an unexpired, unrevoked token hash."""
        t = s.tokens.c
        statement = sa.select(t.user_id).where(
            t.token_hash == token_hash, t.revoked_at.is_(None), t.expires_at > now
        )
        return self._run(statement).scalar()

    def revoke_token(self, token_hash: str) -> bool:
        """Revokes the token (``revoked_at`` is the wall clock); False if unknown or revoked."""
        t = s.tokens.c
        result = self._run(
            sa.update(s.tokens)
            .where(t.token_hash == token_hash, t.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        return result.rowcount > 0

    # follows and blocks -----------------------------------------------------------------------

    def add_follow(self, follower_id: int, followee_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        return self._insert_ignore(
            s.follows, {"follower_id": follower_id, "followee_id": followee_id, "created_at": now}
        )

    def remove_follow(self, follower_id: int, followee_id: int) -> bool:
        """True if there was a follow to remove."""
        f = s.follows.c
        result = self._run(
            sa.delete(s.follows).where(f.follower_id == follower_id, f.followee_id == followee_id)
        )
        return result.rowcount > 0

    def is_following(self, follower_id: int, followee_id: int) -> bool:
        """Whether ``follower_id`` follows ``followee_id``."""
        f = s.follows.c
        statement = sa.select(f.follower_id).where(
            f.follower_id == follower_id, f.followee_id == followee_id
        )
        return self._run(statement).first() is not None

    def follower_count(self, user_id: int) -> int:
        """How many follow ``user_id``."""
        f = s.follows.c
        statement = (
            sa.select(sa.func.count()).select_from(s.follows).where(f.followee_id == user_id)
        )
        return int(self._run(statement).scalar_one())

    def followee_count(self, user_id: int) -> int:
        """How many ``user_id`` follows."""
        f = s.follows.c
        statement = (
            sa.select(sa.func.count()).select_from(s.follows).where(f.follower_id == user_id)
        )
        return int(self._run(statement).scalar_one())

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
            for followee_id, count in rows:
                counts[followee_id] = int(count)
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
            s.blocks, {"blocker_id": blocker_id, "blocked_id": blocked_id, "created_at": now}
        )

    def remove_block(self, blocker_id: int, blocked_id: int) -> bool:
        """True if there was a block to remove."""
        b = s.blocks.c
        result = self._run(
            sa.delete(s.blocks).where(b.blocker_id == blocker_id, b.blocked_id == blocked_id)
        )
        return result.rowcount > 0

    def blocked_either_way(self, user_id: int) -> set[int]:
        """Ids of users this user blocked or was blocked by."""
        b = s.blocks.c
        statement = sa.union(
            sa.select(b.blocked_id.label("other")).where(b.blocker_id == user_id),
            sa.select(b.blocker_id.label("other")).where(b.blocked_id == user_id),
        )
        return set(self._run(statement).scalars())

    # posts ------------------------------------------------------------------------------------

    def create_post(
        self,
        author_id: int,
        now: float,
        caption: str = "",
        media_id: int | None = None,
        media_type: str = "text",
        topic: str = "",
    ) -> Post:
        """A new post (its id is larger than every earlier post's)."""
        statement = (
            sa.insert(s.posts)
            .values(
                author_id=author_id,
                created_at=now,
                caption=caption,
                media_id=media_id,
                media_type=media_type,
                topic=topic,
            )
            .returning(s.posts.c.id)
        )
        post_id = self._run(statement).scalar_one()
        return Post(post_id, author_id, now, caption, media_id, media_type, topic)  # type: ignore[arg-type]

    def get_post(self, post_id: int, include_deleted: bool = False) -> Post | None:
        """The post, or None (also when deleted, unless ``include_deleted``)."""
        p = s.posts.c
        statement = sa.select(s.posts).where(p.id == post_id)
        if not include_deleted:
            statement = statement.where(p.deleted_at.is_(None))
        row = self._run(statement).first()
        return _post(row) if row is not None else None

    def get_posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        """The live (not deleted) ones among ``post_ids``."""
        p = s.posts.c
        found: dict[int, Post] = {}
        for chunk in chunks(post_ids):
            rows = self._by_ids(
                "live_posts",
                lambda m: sa.select(s.posts).where(m(p.id), p.deleted_at.is_(None)),
                chunk,
            )
            for row in rows:
                found[row.id] = _post(row)
        return found

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
                statement, params = self._recent_posts_lateral(chunk, limit_per_author, before_id)
                rows = self._run(statement, params)
            else:
                rows = self._run(self._recent_posts_window(chunk, limit_per_author, before_id))
            found.extend(_post(row) for row in rows)
        found.sort(key=lambda post: post.id, reverse=True)
        return found

    @staticmethod
    def _recent_posts_lateral(
        author_ids: list[int], limit: int, before_id: int | None
    ) -> tuple[sa.Select[Any], dict[str, Any]]:
        params = {
            "author_ids": list(author_ids),
            "per_author": limit,
            "before_id": before_id if before_id is not None else NO_ID_LIMIT,
        }
        return _lateral_statement(), params

    @staticmethod
    def _recent_posts_window(
        author_ids: list[int], limit: int, before_id: int | None
    ) -> sa.Select[Any]:
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

    # media ------------------------------------------------------------------------------------

    def create_media(
        self, owner_id: int, kind: str, content_type: str, raw_key: str | None, now: float
    ) -> Media:
        """A new media row with status ``processing``."""
        statement = (
            sa.insert(s.media)
            .values(
                owner_id=owner_id,
                kind=kind,
                status="processing",
                content_type=content_type,
                created_at=now,
                updated_at=now,
                raw_key=raw_key,
                renditions="[]",
            )
            .returning(s.media.c.id)
        )
        media_id = self._run(statement).scalar_one()
        return Media(
            id=media_id,
            owner_id=owner_id,
            kind=kind,  # type: ignore[arg-type]
            status="processing",
            content_type=content_type,
            created_at=now,
            updated_at=now,
            raw_key=raw_key,
        )

    def get_media(self, media_id: int) -> Media | None:
        """The media row, or None."""
        row = self._run(sa.select(s.media).where(s.media.c.id == media_id)).first()
        return _media(row) if row is not None else None

    def get_media_many(self, media_ids: Sequence[int]) -> dict[int, Media]:
        """The existing media among ``media_ids`` by id."""
        found: dict[int, Media] = {}
        for chunk in chunks(media_ids):
            rows = self._by_ids("media", lambda m: sa.select(s.media).where(m(s.media.c.id)), chunk)
            for row in rows:
                found[row.id] = _media(row)
        return found

    def update_media(
        self,
        media_id: int,
        status: MediaStatus,
        now: float,
        *,
        reason: str | None = None,
        width: int | None = None,
        height: int | None = None,
        thumbhash: str | None = None,
        renditions: Sequence[Rendition] = (),
    ) -> None:
        """Sets status and ``updated_at``; each other field only when given (not None, not
        empty), so e.g. marking ready media ``deleted`` keeps its dimensions and renditions."""
        values: dict[str, Any] = {"status": status, "updated_at": now}
        for name, value in (
            ("reason", reason),
            ("width", width),
            ("height", height),
            ("thumbhash", thumbhash),
        ):
            if value is not None:
                values[name] = value
        if renditions:
            values["renditions"] = _renditions_to_json(renditions)
        self._run(sa.update(s.media).where(s.media.c.id == media_id).values(**values))

    def mark_media_for_deletion(self, media_ids: Sequence[int], delete_after: float) -> None:
        """Sets ``delete_after`` on each of ``media_ids``."""
        for chunk in chunks(media_ids):
            self._run(
                sa.update(s.media).where(s.media.c.id.in_(chunk)).values(delete_after=delete_after)
            )

    # stories ----------------------------------------------------------------------------------

    def create_story(self, author_id: int, media_id: int, now: float, expires_at: float) -> Story:
        """A new story."""
        statement = (
            sa.insert(s.stories)
            .values(author_id=author_id, media_id=media_id, created_at=now, expires_at=expires_at)
            .returning(s.stories.c.id)
        )
        story_id = self._run(statement).scalar_one()
        return Story(story_id, author_id, media_id, now, expires_at)

    def get_story(self, story_id: int) -> Story | None:
        """The story (expired or not), or None."""
        row = self._run(sa.select(s.stories).where(s.stories.c.id == story_id)).first()
        return _story(row) if row is not None else None

    def active_stories(self, author_ids: Sequence[int], now: float) -> list[Story]:
        """Stories with ``expires_at > now`` (strictly), oldest first."""
        st = s.stories.c
        found: list[Story] = []
        for chunk in chunks(author_ids):
            statement = sa.select(s.stories).where(st.author_id.in_(chunk), st.expires_at > now)
            found.extend(_story(row) for row in self._run(statement))
        found.sort(key=lambda story: (story.created_at, story.id))
        return found

    def expired_uncleaned_stories(self, now: float, limit: int) -> list[Story]:
        """Stories with ``expires_at <= now`` not yet marked cleaned, earliest expiry first."""
        st = s.stories.c
        statement = (
            sa.select(s.stories)
            .where(st.expires_at <= now, st.cleaned_at.is_(None))
            .order_by(st.expires_at, st.id)
            .limit(max(0, limit))
        )
        return [_story(row) for row in self._run(statement)]

    def mark_stories_cleaned(self, story_ids: Sequence[int], now: float) -> None:
        """Sets ``cleaned_at`` on each of ``story_ids``."""
        for chunk in chunks(story_ids):
            self._run(sa.update(s.stories).where(s.stories.c.id.in_(chunk)).values(cleaned_at=now))

    def record_story_view(self, story_id: int, viewer_id: int, now: float) -> bool:
        """Unique per (story, viewer): True the first time only."""
        return self._insert_ignore(
            s.story_views, {"story_id": story_id, "viewer_id": viewer_id, "viewed_at": now}
        )

    def story_viewers(self, story_id: int) -> list[tuple[int, float]]:
        """``(viewer_id, viewed_at)``, earliest first."""
        v = s.story_views.c
        statement = (
            sa.select(v.viewer_id, v.viewed_at)
            .where(v.story_id == story_id)
            .order_by(v.viewed_at, v.viewer_id)
        )
        return [(row[0], row[1]) for row in self._run(statement)]

    def seen_stories(self, viewer_id: int, story_ids: Sequence[int]) -> set[int]:
        """The ones among ``story_ids`` that ``viewer_id`` viewed."""
        v = s.story_views.c
        seen: set[int] = set()
        for chunk in chunks(story_ids):
            statement = sa.select(v.story_id).where(v.viewer_id == viewer_id, v.story_id.in_(chunk))
            seen.update(self._run(statement).scalars())
        return seen

    # interactions -----------------------------------------------------------------------------

    def add_like(self, user_id: int, post_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        return self._insert_ignore(
            s.likes, {"user_id": user_id, "post_id": post_id, "created_at": now}
        )

    def remove_like(self, user_id: int, post_id: int) -> bool:
        """True if there was a like to remove."""
        c = s.likes.c
        result = self._run(sa.delete(s.likes).where(c.user_id == user_id, c.post_id == post_id))
        return result.rowcount > 0

    def add_save(self, user_id: int, post_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        return self._insert_ignore(
            s.saves, {"user_id": user_id, "post_id": post_id, "created_at": now}
        )

    def remove_save(self, user_id: int, post_id: int) -> bool:
        """True if there was a save to remove."""
        c = s.saves.c
        result = self._run(sa.delete(s.saves).where(c.user_id == user_id, c.post_id == post_id))
        return result.rowcount > 0

    def add_comment(self, user_id: int, post_id: int, text: str, now: float) -> Comment:
        """A new comment."""
        statement = (
            sa.insert(s.comments)
            .values(post_id=post_id, user_id=user_id, text=text, created_at=now)
            .returning(s.comments.c.id)
        )
        comment_id = self._run(statement).scalar_one()
        return Comment(comment_id, post_id, user_id, text, now)

    def comments(self, post_id: int, after_id: int, limit: int) -> list[Comment]:
        """Comments with id > after_id, oldest first, at most ``limit``."""
        c = s.comments.c
        statement = (
            sa.select(s.comments)
            .where(c.post_id == post_id, c.id > after_id)
            .order_by(c.id)
            .limit(max(0, limit))
        )
        return [_comment(row) for row in self._run(statement)]

    def post_counts(self, post_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """``{post_id: {"likes": n, "comments": n, "saves": n}}`` (zeros included)."""
        counts = {pid: {"likes": 0, "comments": 0, "saves": 0} for pid in post_ids}
        for chunk in chunks(post_ids):
            # one round trip: the three grouped counts as one UNION ALL
            def build(match: Callable[[Any], Any]) -> Any:
                return sa.union_all(
                    *(
                        sa.select(sa.literal(name).label("kind"), t.c.post_id, sa.func.count())
                        .where(match(t.c.post_id))
                        .group_by(t.c.post_id)
                        for name, t in (
                            ("likes", s.likes),
                            ("comments", s.comments),
                            ("saves", s.saves),
                        )
                    )
                )

            for kind, post_id, count in self._by_ids("post_counts", build, chunk):
                counts[post_id][kind] = int(count)
        return counts

    def append_events(self, events: Sequence[InteractionEvent]) -> int:
        """Appends to the event log, skipping event ids already there; returns rows added."""
        if not events:
            return 0
        rows = [
            {
                "event_id": e.event_id,
                "kind": e.kind,
                "user_id": e.user_id,
                "post_id": e.post_id,
                "author_id": e.author_id,
                "ts": e.ts,
                "dwell_ms": e.dwell_ms,
            }
            for e in events
        ]
        statement = (
            self._insert(s.events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(s.events.c.seq)
        )
        return len(self._run(statement, rows).all())

    # outbox -----------------------------------------------------------------------------------

    def add_outbox(self, event: Event) -> None:
        """Queues ``event`` for :meth:`SqlMetadataStore.relay_outbox` (commits with the tx)."""
        self._run(
            sa.insert(s.outbox).values(
                event_id=event.id,
                stream=event.stream,
                kind=event.kind,
                payload=event_to_json(event).decode(),
                ts=event.ts,
            )
        )


# --- the store -----------------------------------------------------------------------------------


class SqlMetadataStore:
    """:class:`~serving.social.storage.interfaces.MetadataStore` on an SQLAlchemy engine whose
    database has been migrated (:func:`~serving.social.storage.sql.engine.migrate`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._relay_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, run_migrations: bool = True) -> SqlMetadataStore:
        """A store on a new engine for ``url``, migrated to head unless told otherwise."""
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[SqlMetadataTx]:
        """Commits on normal exit, rolls back on an exception (which propagates)."""
        with self.engine.begin() as connection:
            yield SqlMetadataTx(connection)

    @contextmanager
    def reading(self) -> Iterator[SqlMetadataTx]:
        """For reads only: PostgreSQL runs each statement on its own (autocommit: no BEGIN and
        COMMIT round trips), SQLite takes a deferred, shared transaction (no write lock)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield SqlMetadataTx(conn)
        else:
            connection = self.engine.connect().execution_options(**{READ_ONLY: True})
            with connection as conn, conn.begin():
                yield SqlMetadataTx(conn)

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
                return self._publish_rows(connection, rows, publish)
        with self._relay_lock:
            with self.engine.begin() as connection:
                rows = connection.execute(select_unpublished).all()
            if not rows:
                return 0
            with self.engine.connect() as connection:
                return self._publish_rows(connection, rows, publish)

    @staticmethod
    def _publish_rows(
        connection: sa.Connection, rows: Sequence[Any], publish: Callable[[Event], object]
    ) -> int:
        """Publishes ``rows`` in order, stopping at the first failure, marks those published
        and commits (also on failure, whose exception is then re-raised)."""
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
                sa.update(s.outbox)
                .where(s.outbox.c.seq.in_(chunk))
                .values(published_at=published_at)
            )
        connection.commit()
        if error is not None:
            raise error
        return len(done)

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
        e = s.events.c
        last = after_seq
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(
                    sa.select(s.events).where(e.seq > last).order_by(e.seq).limit(max(1, batch))
                ).all()
            if not rows:
                return
            found = [_interaction(row) for row in rows]
            last = rows[-1].seq
            yield found

    def check(self) -> None:
        """Raises ``RuntimeError`` if the database is unreachable or not at the head revision."""
        try:
            revision = current_revision(self.engine)
        except Exception as error:
            where = self.engine.url.render_as_string(hide_password=True)
            raise RuntimeError(f"metadata database unreachable at {where}: {error}") from error
        head = head_revision()
        if revision != head:
            raise RuntimeError(
                f"metadata database schema is at revision {revision!r}, expected {head!r}: "
                "run `recsys backend migrate` (serving.social.storage.sql.migrate)"
            )

    def close(self) -> None:
        """Closes the engine's pooled connections."""
        self.engine.dispose()
