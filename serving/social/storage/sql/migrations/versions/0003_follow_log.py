"""The follow log: every follow and unfollow with its time, in commit order (``follows`` keeps
the current graph only), so the graph is known as of any time.

Revision ID: 0003_follow_log
Revises: 0002_hardening
Create Date: 2026-12-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_follow_log"
down_revision: str | Sequence[str] | None = "0002_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# written out here (not imported from schema.py) so that this revision never changes
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "follow_log",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("follower_id", sa.BigInteger(), nullable=False),
        sa.Column("followee_id", sa.BigInteger(), nullable=False),
        sa.Column("following", sa.Boolean(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_follow_log"),
    )


def downgrade() -> None:
    op.drop_table("follow_log")
