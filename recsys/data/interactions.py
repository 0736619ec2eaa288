"""Implicit-feedback interactions: a per-user chronological split, id maps and CSR matrices.

The split used to evaluate retrieval (full-corpus ranking) holds out the *end* of every user's
history rather than a global time window:

* each user's rows are ordered by ``(timestamp, order)`` -- ties in the timestamp keep the
  ``order`` column (file order, ``_row`` for the readers); rows equal on both keep input order;
* a user with ``n >= min_interactions`` rows gets ``n_train = floor(f0 n)``,
  ``n_valid = floor((f0 + f1) n) - n_train`` and ``n_test = n - n_train - n_valid`` (fractions
  read as the decimals they print as, so the arithmetic is exact); if that leaves
  ``n_test == 0`` (possible only when ``f2 == 0``) one row moves to test from valid, or from
  train when valid is empty, so every such user has at least one test row. With ``f2 > 0``
  ``floor((f0 + f1) n) < n`` and the rule never fires;
* a user with fewer than ``min_interactions`` rows keeps them all in train.

For ``(0.8, 0.1, 0.1)``: ``n = 5 -> 4/0/1``, ``n = 9 -> 7/1/1``, ``n = 20 -> 16/2/2``.

Every row counts as one interaction (ratings are not thresholded). :class:`IdMap` maps string
ids to contiguous ``int64`` indices and :class:`InteractionMatrix` builds binary
``n_users x n_items`` scipy CSR matrices of any split.

Example::

    frame = pl.concat(MovieLensReader("ml-100k").iter_chunks())
    splits = per_user_chronological_split(frame, "user_id", "item_id", "timestamp")
    matrix = InteractionMatrix.from_frame(frame, "user_id", "item_id")
    train = matrix.csr(splits["train"])             # n_users x n_items, 1.0 per interaction
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data.split import SPLITS

__all__ = [
    "SPLIT_COLUMN",
    "IdMap",
    "InteractionMatrix",
    "assign_per_user_split",
    "pairs_to_csr",
    "per_user_chronological_split",
    "per_user_split_sizes",
]

SPLIT_COLUMN = "_split"
_POS = "_interactions_pos"
_RANK = "_interactions_rank"
_COUNT = "_interactions_count"


def _exact_fractions(fractions: Sequence[float]) -> tuple[Fraction, Fraction]:
    """Validates ``fractions`` and returns the exact ``f0`` and ``f0 + f1``."""
    fr = tuple(fractions)
    if len(fr) != 3 or any(not np.isfinite(f) or f < 0 for f in fr):
        raise ValueError(f"fractions must be 3 non-negative numbers, got {fractions}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    f0 = Fraction(repr(float(fr[0])))
    f01 = min(Fraction(1), f0 + Fraction(repr(float(fr[1]))))
    return f0, f01


def per_user_split_sizes(
    n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), min_interactions: int = 5
) -> tuple[int, int, int]:
    """``(n_train, n_valid, n_test)`` of one user with ``n`` interactions (the module's rule)."""
    f0, f01 = _exact_fractions(fractions)
    if n < max(1, min_interactions):
        return n, 0, 0
    n_train = (n * f0.numerator) // f0.denominator
    n_valid = (n * f01.numerator) // f01.denominator - n_train
    if n - n_train - n_valid == 0:
        if n_valid > 0:
            n_valid -= 1
        else:
            n_train -= 1
    return n_train, n_valid, n - n_train - n_valid


def _check_columns(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column(s) {missing}; found {frame.columns}")
    for c in columns:
        nulls = frame[c].null_count()
        if nulls:
            first = int(frame[c].is_null().arg_max())  # type: ignore[arg-type]
            raise ValueError(f"column {c!r} has {nulls} null value(s) (first at row {first})")


def assign_per_user_split(
    frame: pl.DataFrame,
    user: str,
    timestamp: str,
    order: str | None = "_row",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    min_interactions: int = 5,
) -> pl.Series:
    """The split of every row as an Int8 series named ``_split``: 0 train, 1 valid, 2 test.

    Same length and row order as ``frame``. ``order=None`` breaks timestamp ties by input
    order. Vectorized: one window rank per user (``over(user, order_by=...)``), no Python loop.

    Raises:
        ValueError: on missing columns, nulls in them, bad fractions or ``min_interactions < 1``.
    """
    if min_interactions < 1:
        raise ValueError(f"min_interactions must be >= 1, got {min_interactions}")
    f0, f01 = _exact_fractions(fractions)
    keys = [user, timestamp] + ([order] if order is not None else [])
    _check_columns(frame, keys)
    order_by = [timestamp] + ([order] if order is not None else []) + [_POS]
    n = pl.col(_COUNT)
    n_train = (n * f0.numerator) // f0.denominator
    n_train_valid = (n * f01.numerator) // f01.denominator
    # n_test == 0 only when floor((f0 + f1) n) == n: the last row moves to test, taken from
    # valid when valid is non-empty (n_train_valid > n_train), otherwise from train.
    no_test = n_train_valid >= n
    n_train = pl.when(no_test & (n_train_valid == n_train)).then(n_train - 1).otherwise(n_train)
    n_train_valid = pl.when(no_test).then(n - 1).otherwise(n_train_valid)
    rank = pl.col(_RANK)
    split = (
        pl.when((n < min_interactions) | (rank < n_train))
        .then(pl.lit(0, dtype=pl.Int8))
        .when(rank < n_train_valid)
        .then(pl.lit(1, dtype=pl.Int8))
        .otherwise(pl.lit(2, dtype=pl.Int8))
    )
    out = (
        frame.select(keys)
        .with_row_index(_POS)
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).over(user, order_by=order_by).alias(_RANK),
            pl.len().over(user).cast(pl.Int64).alias(_COUNT),
        )
        .select(split.alias(SPLIT_COLUMN))
    )
    return out[SPLIT_COLUMN]


def per_user_chronological_split(
    frame: pl.DataFrame,
    user: str,
    item: str,
    timestamp: str,
    order: str | None = "_row",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    min_interactions: int = 5,
) -> dict[str, pl.DataFrame]:
    """Splits every user's history in time: ``{"train", "valid", "test"}`` frames.

    See the module docstring for the exact rule. Each output keeps all columns of ``frame``
    and the input row order; together they partition ``frame``. ``item`` is only checked
    for presence and nulls (every row is an interaction, duplicates included).

    Example:
        >>> f = pl.DataFrame({"u": ["a"] * 5, "i": list("vwxyz"), "t": [5, 4, 3, 2, 1],
        ...                   "_row": [0, 1, 2, 3, 4]})
        >>> per_user_chronological_split(f, "u", "i", "t")["test"]["i"].to_list()
        ['v']
    """
    _check_columns(frame, [item])
    split = assign_per_user_split(frame, user, timestamp, order, fractions, min_interactions)
    return {name: frame.filter(split == code) for code, name in enumerate(SPLITS)}


class IdMap:
    """A bijection between string ids and contiguous indices ``0 .. len - 1``.

    Index ``i`` is the ``i``-th id in the sequence given to the constructor;
    :meth:`from_values` sorts the distinct values, so the map does not depend on row order.
    """

    def __init__(self, ids: Sequence[str] | pl.Series) -> None:
        series = pl.Series("id", ids, dtype=pl.Utf8)
        if series.null_count():
            raise ValueError("ids must not contain nulls")
        if series.n_unique() != series.len():
            dup = series.filter(series.is_duplicated()).first()
            raise ValueError(f"ids must be unique, {dup!r} appears more than once")
        self._ids = series
        self._index = pl.Series("index", np.arange(series.len(), dtype=np.int64))

    @classmethod
    def from_values(cls, values: Sequence[str] | pl.Series) -> IdMap:
        """A map of the distinct non-null values, in sorted (lexicographic) order."""
        series = pl.Series("id", values, dtype=pl.Utf8).drop_nulls().unique().sort()
        return cls(series)

    def __len__(self) -> int:
        return self._ids.len()

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and bool(self._ids.is_in([value]).any())

    def __repr__(self) -> str:
        return f"IdMap({len(self)} ids)"

    @property
    def ids(self) -> list[str]:
        """All ids in index order."""
        return self._ids.to_list()

    def to_index(self, values: Sequence[str] | pl.Series, strict: bool = True) -> np.ndarray:
        """``int64`` indices of ``values`` (shape ``N``).

        Args:
            values: string ids (a null counts as unknown).
            strict: unknown ids raise ``KeyError`` naming the first one (and its position);
                with ``strict=False`` they map to ``-1``.
        """
        series = pl.Series("id", values, dtype=pl.Utf8)
        index = series.replace_strict(self._ids, self._index, default=-1, return_dtype=pl.Int64)
        out = index.to_numpy().astype(np.int64, copy=False)
        if strict and out.size and (out < 0).any():
            pos = int(np.flatnonzero(out < 0)[0])
            raise KeyError(
                f"unknown id {series[pos]!r} at position {pos} "
                f"({int((out < 0).sum())} unknown of {out.size}; the map has {len(self)} ids)"
            )
        return out

    def from_index(self, indices: Any) -> list[str]:
        """The ids at ``indices`` (any integer array-like); out-of-range raises ``IndexError``."""
        idx = np.asarray(indices)
        if idx.size and idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).ravel()
        bad = (idx < 0) | (idx >= len(self))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise IndexError(
                f"index {int(idx[pos])} at position {pos} is outside 0 .. {len(self) - 1}"
            )
        return self._ids.gather(idx).to_list()


@dataclass(frozen=True)
class InteractionMatrix:
    """User and item id maps plus the column names they read; builds CSR matrices of frames.

    Build it from *all* interactions (every split) so that every item of the corpus has a
    column, then call :meth:`csr` on each split.
    """

    users: IdMap
    items: IdMap
    user: str = "user_id"
    item: str = "item_id"

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, user: str = "user_id", item: str = "item_id"
    ) -> InteractionMatrix:
        """Id maps of the distinct users and items of ``frame`` (sorted ids)."""
        _check_columns(frame, [user, item])
        return cls(IdMap.from_values(frame[user]), IdMap.from_values(frame[item]), user, item)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return len(self.users), len(self.items)

    def csr(self, frame: pl.DataFrame) -> sp.csr_matrix:
        """Binary ``n_users x n_items`` float32 CSR of the (user, item) pairs in ``frame``.

        A pair seen several times is stored once with value 1.0; indices within each row are
        sorted. Unknown ids raise ``KeyError`` naming the column.
        """
        _check_columns(frame, [self.user, self.item])
        try:
            rows = self.users.to_index(frame[self.user])
        except KeyError as e:
            raise KeyError(f"column {self.user!r}: {e.args[0]}") from None
        try:
            cols = self.items.to_index(frame[self.item])
        except KeyError as e:
            raise KeyError(f"column {self.item!r}: {e.args[0]}") from None
        return pairs_to_csr(rows, cols, self.shape)


def pairs_to_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR with a 1.0 at every ``(rows[j], cols[j])`` (duplicates collapse)."""
    n_items = max(1, shape[1])
    keys = np.unique(rows.astype(np.int64) * n_items + cols.astype(np.int64))
    r, c = np.divmod(keys, n_items)
    data = np.ones(keys.shape[0], dtype=np.float32)
    matrix = sp.csr_matrix((data, (r, c)), shape=shape)
    matrix.sort_indices()
    return matrix
