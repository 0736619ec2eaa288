"""The raw-source protocol shared by the readers and the synthetic generator.

A raw source streams a table in chunks of Polars frames whose columns are
``schema.columns()`` plus ``_row``: the row's 0-based position in the source (file order,
across files), used for line numbers in errors and to break timestamp ties in file order.
After iteration, ``report`` holds what was read and what was skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import polars as pl

from recsys.types import DataError, RawSchema

BadRowPolicy = Literal["error", "skip"]
ROW_COLUMN = "_row"
MAX_REPORTED_EXAMPLES = 20


@dataclass
class ReadReport:
    """What a source read: rows kept, rows skipped as bad, and the first few reasons."""

    rows_read: int = 0
    rows_skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def skip(self, error: DataError) -> None:
        """Counts one skipped row and keeps its message if fewer than 20 are kept."""
        self.rows_skipped += 1
        if len(self.examples) < MAX_REPORTED_EXAMPLES:
            self.examples.append(str(error))

    def to_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "skipped_examples": list(self.examples),
        }


@runtime_checkable
class RawSource(Protocol):
    """Anything that streams a raw table: readers of real formats, the synthetic generator."""

    name: str
    schema: RawSchema
    report: ReadReport

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        """Yields frames with ``schema.columns()`` and ``_row``, in source order."""
        ...

    def describe(self) -> dict[str, object]:
        """JSON-able facts about the source for the manifest (paths, release, parameters)."""
        ...


def check_policy(on_bad_rows: str) -> BadRowPolicy:
    """Validates a bad-row policy string."""
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    return on_bad_rows  # type: ignore[return-value]
