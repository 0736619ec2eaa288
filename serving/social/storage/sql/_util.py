"""Helpers the SQL adapters share: the dialect's ``INSERT .. ON CONFLICT`` and chunked ``IN``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")

#: Most values bound in one ``IN (...)`` (SQLite allows 32766 variables per statement).
IN_CHUNK = 5_000


def upsert_insert(dialect_name: str, table: sa.Table) -> Any:
    """``INSERT`` for ``table`` with ``on_conflict_do_nothing`` / ``on_conflict_do_update``
    (the SQLite or PostgreSQL construct, which have the same API)."""
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database dialect {dialect_name!r} (sqlite or postgresql)")


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """``values`` deduplicated (order kept) in lists of at most ``size``."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]
