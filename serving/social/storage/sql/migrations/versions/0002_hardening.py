"""Hardening: indexes to find what a media item is attached to (its visibility follows the post
or story showing it), the idempotency keys of writes, and no ``story_seen`` (the seen marks of
stories are ``story_views``, the durable record of every view).

Revision ID: 0002_hardening
Revises: 0001_initial
Create Date: 2026-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_hardening"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_posts_media_id", "posts", ["media_id"])
    op.create_index("ix_stories_media_id", "stories", ["media_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name="pk_idempotency_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_idempotency_keys_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.drop_index("ix_story_seen_story_id", table_name="story_seen")
    op.drop_table("story_seen")


def downgrade() -> None:
    op.create_table(
        "story_seen",
        sa.Column("viewer_id", sa.BigInteger(), nullable=False),
        sa.Column("story_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("viewer_id", "story_id", name="pk_story_seen"),
    )
    op.create_index("ix_story_seen_story_id", "story_seen", ["story_id"])
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_stories_media_id", table_name="stories")
    op.drop_index("ix_posts_media_id", table_name="posts")
