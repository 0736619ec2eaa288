"""The backend's relational schema: one SQLAlchemy Core :class:`~sqlalchemy.MetaData` used on
SQLite (embedded mode) and PostgreSQL (production) alike.

Autoincrement ids are ``BIGINT`` on PostgreSQL (``BIGSERIAL``-like identity) and plain
``INTEGER PRIMARY KEY`` rowids on SQLite, so in both a larger id is a newer row. Times are unix
seconds stored as double precision. JSON columns (media renditions, outbox payloads) are text;
renditions read and write as :class:`~serving.social.domain.Rendition` tuples
(:class:`Renditions`).

The tables below ``timeline`` back the embedded adapters of :mod:`.embedded` and :mod:`.bus`;
production keeps that state in Redis and leaves them empty. Alembic migrations in
``migrations/versions`` must produce exactly this metadata (a test compares them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

from serving.social.domain import Rendition

#: An autoincrementing id: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Renditions(TypeDecorator[tuple[Rendition, ...]]):
    """A media item's renditions: a tuple of :class:`~serving.social.domain.Rendition` in
    Python, compact JSON text (a list of objects) in the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Sequence[Rendition] | None, dialect: Dialect) -> str:
        items = [dataclasses.asdict(rendition) for rendition in value or ()]
        return json.dumps(items, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[Rendition, ...]:
        return tuple(Rendition(**item) for item in json.loads(value)) if value else ()


def _user_fk(name: str, *, nullable: bool = False, primary_key: bool = False) -> Column:
    return Column(
        name,
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=nullable,
        primary_key=primary_key,
    )


def _pairs(name: str, user: str, other: str, refers_to: str, index: tuple[str, ...]) -> Table:
    """A set of ``(user, other)`` pairs, the primary key, with the time each was made: ``user``
    refers to a user, ``other`` to the row ``refers_to`` (who follows or blocks whom, who liked
    or saved which post), and an index on the columns ``index``."""
    return Table(
        name,
        metadata,
        _user_fk(user, primary_key=True),
        Column(other, BigInteger, ForeignKey(refers_to, ondelete="CASCADE"), primary_key=True),
        Column("created_at", Double, nullable=False),
        Index(None, *index),
    )


users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_active_at", Double, nullable=False),
    Column("country", String(8), nullable=False),
    Column("age_bucket", String(16), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(128), primary_key=True),
    _user_fk("user_id"),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Index(None, "user_id"),
)

follows = _pairs(
    "follows", "follower_id", "followee_id", "users.id", ("followee_id", "follower_id")
)
blocks = _pairs("blocks", "blocker_id", "blocked_id", "users.id", ("blocked_id", "blocker_id"))

media = Table(
    "media",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _user_fk("owner_id"),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("raw_key", String(128), nullable=True),
    Column("reason", Text, nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("thumbhash", String(128), nullable=True),
    Column("renditions", Renditions, nullable=False),
    Column("delete_after", Double, nullable=True),
    Index(None, "owner_id"),
    Index(None, "delete_after"),
)

posts = Table(
    "posts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _user_fk("author_id"),
    Column("created_at", Double, nullable=False),
    Column("caption", Text, nullable=False),
    Column("media_id", BigInteger, ForeignKey("media.id", ondelete="SET NULL"), nullable=True),
    Column("media_type", String(16), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("deleted_at", Double, nullable=True),
    Index(None, "author_id", "id"),
    Index(None, "media_id"),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _user_fk("author_id"),
    Column("media_id", BigInteger, ForeignKey("media.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("cleaned_at", Double, nullable=True),
    Index(None, "expires_at"),
    Index(None, "author_id", "expires_at"),
    Index(None, "media_id"),
)

story_views = Table(
    "story_views",
    metadata,
    Column(
        "story_id",
        BigInteger,
        ForeignKey("stories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _user_fk("viewer_id", primary_key=True),
    Column("viewed_at", Double, nullable=False),
    Index(None, "viewer_id", "story_id"),
)


likes = _pairs("likes", "user_id", "post_id", "posts.id", ("post_id",))
saves = _pairs("saves", "user_id", "post_id", "posts.id", ("post_id",))

comments = Table(
    "comments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("post_id", BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    _user_fk("user_id"),
    Column("text", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Index(None, "post_id", "id"),
)

# The interaction log the rankers learn from: no foreign keys (it outlives what it mentions).
events = Table(
    "events",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("post_id", BigInteger, nullable=False),
    Column("author_id", BigInteger, nullable=False),
    Column("ts", Double, nullable=False),
    Column("dwell_ms", Integer, nullable=True),
)

follow_log = Table(
    # every follow and unfollow in commit order (the graph's history; ``follows`` holds the
    # current state): ``following`` true for a follow, false for an unfollow
    "follow_log",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("follower_id", BigInteger, nullable=False),
    Column("followee_id", BigInteger, nullable=False),
    Column("following", Boolean, nullable=False),
    Column("ts", Double, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the whole event as event_to_json
    Column("ts", Double, nullable=False),
    Column("published_at", Double, nullable=True),
    Index(None, "published_at", "seq"),
)

# --- embedded-mode state (Redis in production) ---------------------------------------------------

#: Idempotency keys of writes: the first answer to (user, key), replayed to a retry. Written in
#: the transaction of the write itself, so a key exists exactly when its write committed.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(128), nullable=False),
    Column("scope", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("user_id", "key"),
    Index(None, "created_at"),
)

timeline = Table(
    "timeline",
    metadata,
    Column("owner_id", BigInteger, nullable=False),
    Column("post_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("owner_id", "post_id"),
    sqlite_with_rowid=False,  # the primary key is the table: one b-tree, not two
)

timeline_built = Table(
    "timeline_built",
    metadata,
    Column("owner_id", BigInteger, primary_key=True, autoincrement=False),
)

story_tray = Table(
    "story_tray",
    metadata,
    Column("author_id", BigInteger, nullable=False),
    Column("story_id", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    PrimaryKeyConstraint("author_id", "story_id"),
    Index(None, "expires_at"),
)

kv_cache = Table(
    "kv_cache",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index(None, "expires_at"),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

bus_messages = Table(
    "bus_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("data", Text, nullable=False),  # event_to_json
    Column("created_at", Double, nullable=False),
    Index(None, "stream", "id"),
)

bus_groups = Table(
    "bus_groups",
    metadata,
    Column("stream", String(64), nullable=False),
    Column("group_name", String(64), nullable=False),
    Column("last_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("stream", "group_name"),
)

bus_pending = Table(
    "bus_pending",
    metadata,
    Column("stream", String(64), nullable=False),
    Column("group_name", String(64), nullable=False),
    Column("message_id", BigInteger, nullable=False),
    Column("consumer", String(128), nullable=False),
    Column("delivered_at", Double, nullable=False),
    Column("deliveries", Integer, nullable=False),
    PrimaryKeyConstraint("stream", "group_name", "message_id"),
    Index(None, "stream", "group_name", "delivered_at"),
)

#: Every table, parents before children (the order TRUNCATE/DELETE can use in reverse).
ALL_TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)
