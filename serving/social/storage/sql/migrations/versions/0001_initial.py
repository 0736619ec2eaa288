"""The initial schema: users and tokens, the graph, posts, media, stories, interactions, the
event log, the outbox, and the embedded-mode tables (timelines, story trays, cache, rate
buckets, bus).

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# written out here (not imported from schema.py) so that this revision never changes
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _fk(column: str, table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=f"fk_{{table_name}}_{column}_{table}", ondelete=ondelete
    )


def _table(name: str, *items: sa.SchemaItem, **kw: object) -> None:
    resolved = []
    for item in items:
        if isinstance(item, sa.ForeignKeyConstraint) and item.name:
            item.name = item.name.replace("{table_name}", name)
        resolved.append(item)
    op.create_table(name, *resolved, **kw)


def _index(table: str, *columns: str, unique: bool = False) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), unique=unique)


def upgrade() -> None:
    _table(
        "users",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_active_at", sa.Double(), nullable=False),
        sa.Column("country", sa.String(8), nullable=False),
        sa.Column("age_bucket", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    _table(
        "tokens",
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_tokens"),
        _fk("user_id", "users", "CASCADE"),
    )
    _index("tokens", "user_id")
    for name, first, second in (
        ("follows", "follower_id", "followee_id"),
        ("blocks", "blocker_id", "blocked_id"),
    ):
        _table(
            name,
            sa.Column(first, sa.BigInteger(), nullable=False),
            sa.Column(second, sa.BigInteger(), nullable=False),
            sa.Column("created_at", sa.Double(), nullable=False),
            sa.PrimaryKeyConstraint(first, second, name=f"pk_{name}"),
            _fk(first, "users", "CASCADE"),
            _fk(second, "users", "CASCADE"),
        )
        _index(name, second, first)
    _table(
        "media",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("raw_key", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("thumbhash", sa.String(128), nullable=True),
        sa.Column("renditions", sa.Text(), nullable=False),
        sa.Column("delete_after", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_media"),
        _fk("owner_id", "users", "CASCADE"),
    )
    _index("media", "owner_id")
    _index("media", "delete_after")
    _table(
        "posts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("media_id", sa.BigInteger(), nullable=True),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("deleted_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        _fk("author_id", "users", "CASCADE"),
        _fk("media_id", "media", "SET NULL"),
    )
    _index("posts", "author_id", "id")
    _table(
        "stories",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("media_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("cleaned_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stories"),
        _fk("author_id", "users", "CASCADE"),
        _fk("media_id", "media", "CASCADE"),
    )
    _index("stories", "expires_at")
    _index("stories", "author_id", "expires_at")
    _table(
        "story_views",
        sa.Column("story_id", sa.BigInteger(), nullable=False),
        sa.Column("viewer_id", sa.BigInteger(), nullable=False),
        sa.Column("viewed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("story_id", "viewer_id", name="pk_story_views"),
        _fk("story_id", "stories", "CASCADE"),
        _fk("viewer_id", "users", "CASCADE"),
    )
    _index("story_views", "viewer_id", "story_id")
    for name in ("likes", "saves"):
        _table(
            name,
            sa.Column("user_id", sa.BigInteger(), nullable=False),
            sa.Column("post_id", sa.BigInteger(), nullable=False),
            sa.Column("created_at", sa.Double(), nullable=False),
            sa.PrimaryKeyConstraint("user_id", "post_id", name=f"pk_{name}"),
            _fk("user_id", "users", "CASCADE"),
            _fk("post_id", "posts", "CASCADE"),
        )
        _index(name, "post_id")
    _table(
        "comments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_comments"),
        _fk("post_id", "posts", "CASCADE"),
        _fk("user_id", "users", "CASCADE"),
    )
    _index("comments", "post_id", "id")
    _table(
        "events",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("dwell_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    _table(
        "outbox",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("published_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
    )
    _index("outbox", "published_at", "seq")

    # --- embedded-mode state -------------------------------------------------------------------
    _table(
        "timeline",
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "post_id", name="pk_timeline"),
        sqlite_with_rowid=False,
    )
    _table(
        "timeline_built",
        sa.Column("owner_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name="pk_timeline_built"),
    )
    _table(
        "story_tray",
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("story_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("author_id", "story_id", name="pk_story_tray"),
    )
    _index("story_tray", "expires_at")
    _table(
        "story_seen",
        sa.Column("viewer_id", sa.BigInteger(), nullable=False),
        sa.Column("story_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("viewer_id", "story_id", name="pk_story_seen"),
    )
    _index("story_seen", "story_id")
    _table(
        "kv_cache",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_kv_cache"),
    )
    _index("kv_cache", "expires_at")
    _table(
        "rate_buckets",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_rate_buckets"),
    )
    _table(
        "bus_messages",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bus_messages"),
    )
    _index("bus_messages", "stream", "id")
    _table(
        "bus_groups",
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream", "group_name", name="pk_bus_groups"),
    )
    _table(
        "bus_pending",
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("stream", "group_name", "message_id", name="pk_bus_pending"),
    )
    _index("bus_pending", "stream", "group_name", "delivered_at")


def downgrade() -> None:
    for name in (
        "bus_pending",
        "bus_groups",
        "bus_messages",
        "rate_buckets",
        "kv_cache",
        "story_seen",
        "story_tray",
        "timeline_built",
        "timeline",
        "outbox",
        "events",
        "comments",
        "saves",
        "likes",
        "story_views",
        "stories",
        "posts",
        "media",
        "blocks",
        "follows",
        "tokens",
        "users",
    ):
        op.drop_table(name)
