"""Helpers the SQL adapters share: the dialect's ``INSERT .. ON CONFLICT``, chunked ``IN``, and
the every-n-th-write counter of their periodic clean-ups."""

from __future__ import annotations

import threading
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


class EveryNth:
    """A thread-safe counter of calls that answers True on every ``n``-th one (``n`` below 1
    counts as 1): when a write should also clean up (trim a stream, purge expired entries).

    >>> due = EveryNth(2)
    >>> [due(), due(), due(), due()]
    [False, True, False, True]
    """

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self._calls += 1
            return self._calls % self.n == 0
