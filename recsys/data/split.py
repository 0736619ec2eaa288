"""Train / valid / test splits with exact row counts.

Every row gets a sort key; rows are ranked by it and the first ``floor(f0 * n)`` rows are
train, the next ``floor((f0 + f1) * n) - n_train`` valid and the rest test.

* ``temporal``: key ``(timestamp, _row)`` -- ties in the timestamp keep file order; without a
  timestamp column the key is ``_row`` (file order).
* ``random``: key ``(splitmix64(_row, seed), _row)`` -- a seeded pseudo-random permutation that
  depends only on each row's source position, never on how the source was chunked.

Only the two boundary keys are computed (one sort of the key columns); each split is then a
predicate on the key, so the rows themselves are filtered in a streaming fashion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys.data.source import ROW_COLUMN
from recsys.types import RawSchema

SPLITS = ("train", "valid", "test")
SPLIT_KEY_COLUMN = "_split_key"

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class SplitConfig:
    """How rows are split into train / valid / test.

    Attributes:
        kind: ``"temporal"`` (by timestamp, ties and missing timestamp column: file order) or
            ``"random"`` (seeded, chunking-independent).
        fractions: train, valid, test fractions (non-negative, summing to 1).
        seed: seed of the random split (ignored by temporal).
    """

    kind: Literal["temporal", "random"] = "temporal"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("temporal", "random"):
            raise ValueError(f"split kind must be 'temporal' or 'random', got {self.kind!r}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions):
            raise ValueError(f"fractions must be 3 non-negative numbers, got {self.fractions}")
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {self.fractions}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "fractions": list(self.fractions), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SplitConfig:
        return cls(
            kind=d.get("kind", "temporal"),
            fractions=tuple(d.get("fractions", (0.8, 0.1, 0.1))),  # type: ignore[arg-type]
            seed=int(d.get("seed", 0)),
        )


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Exact row counts: ``n_train = floor(f0 n)``, ``n_valid = floor((f0 + f1) n) - n_train``.

    Fractions are read as the decimals they print as, so ``0.29 * 100`` gives 29, not 28.
    """
    f0, f1 = Fraction(repr(float(fractions[0]))), Fraction(repr(float(fractions[1])))
    n_train = min(n, floor(f0 * n))
    n_train_valid = min(n, floor((f0 + f1) * n))
    return n_train, n_train_valid - n_train, n - n_train_valid


def splitmix64(rows: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 finalizer of ``row + (seed + 1) * golden``; ``uint64`` array, same length."""
    x = rows.astype(np.uint64) + np.uint64(((seed + 1) * _GOLDEN) % (1 << 64))
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def key_columns(schema: RawSchema, config: SplitConfig) -> tuple[str, ...]:
    """The columns whose lexicographic order ranks the rows."""
    if config.kind == "random":
        return (SPLIT_KEY_COLUMN, ROW_COLUMN)
    if schema.timestamp is not None:
        return (schema.timestamp, ROW_COLUMN)
    return (ROW_COLUMN,)


def add_split_key(frame: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """Adds the ``_split_key`` (UInt64) column that random splits sort by; no-op for temporal."""
    if config.kind != "random":
        return frame
    rows = frame[ROW_COLUMN].to_numpy()
    key = pl.Series(SPLIT_KEY_COLUMN, splitmix64(rows, config.seed), dtype=pl.UInt64)
    return frame.with_columns(key)


@dataclass(frozen=True)
class SplitBoundaries:
    """The keys of the first valid row and the first test row (None: no such row)."""

    columns: tuple[str, ...]
    dtypes: tuple[pl.DataType, ...]
    valid_start: tuple[Any, ...] | None
    test_start: tuple[Any, ...] | None
    sizes: tuple[int, int, int]

    def _before(self, bound: tuple[Any, ...] | None) -> pl.Expr:
        """Rows whose key sorts strictly before ``bound``."""
        if bound is None:
            return pl.lit(True)
        lits = [pl.lit(v, dtype=t) for v, t in zip(bound, self.dtypes)]
        expr = pl.col(self.columns[-1]) < lits[-1]
        for col, lit in zip(reversed(self.columns[:-1]), reversed(lits[:-1])):
            expr = (pl.col(col) < lit) | ((pl.col(col) == lit) & expr)
        return expr

    def predicate(self, split: str) -> pl.Expr:
        """Boolean expression selecting the rows of ``split`` (train, valid or test)."""
        if split == "train":
            return self._before(self.valid_start)
        if split == "valid":
            return ~self._before(self.valid_start) & self._before(self.test_start)
        if split == "test":
            return ~self._before(self.test_start)
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")

    def assign(self) -> pl.Expr:
        """Int8 expression: 0 train, 1 valid, 2 test."""
        return (
            pl.when(self._before(self.valid_start))
            .then(pl.lit(0, dtype=pl.Int8))
            .when(self._before(self.test_start))
            .then(pl.lit(1, dtype=pl.Int8))
            .otherwise(pl.lit(2, dtype=pl.Int8))
            .alias("_split")
        )


def compute_boundaries(
    raw: pl.LazyFrame, columns: Sequence[str], config: SplitConfig
) -> SplitBoundaries:
    """Ranks all rows of ``raw`` by ``columns`` and returns the two boundary keys.

    Only the key columns are read and sorted (``8 * len(columns)`` bytes per row).
    """
    columns = tuple(columns)
    keys = raw.select(columns)
    n = int(keys.select(pl.len()).collect().item())
    sizes = split_sizes(n, config.fractions)
    starts = [sizes[0], sizes[0] + sizes[1]]
    wanted = [s for s in starts if s < n]
    dtypes = tuple(keys.collect_schema()[c] for c in columns)
    picked: list[tuple[Any, ...]] = []
    if wanted:
        rows = (
            keys.sort(list(columns), maintain_order=False)
            .select(pl.all().gather(wanted))
            .collect(engine="streaming")
        )
        picked = list(rows.iter_rows())
    bounds: list[tuple[Any, ...] | None] = [None, None]
    for i, s in enumerate(starts):
        if s < n:
            bounds[i] = picked[wanted.index(s)]
    return SplitBoundaries(columns, dtypes, bounds[0], bounds[1], sizes)
