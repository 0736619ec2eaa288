"""Leakage-free engagement histories: for each event, the user's items strictly before it.

A retrieval model's user tower reads "the items this user engaged with recently". Built for
training, that feature must use only what was known when the event happened; otherwise the
tower learns from the future (the positive itself, or items of the same session).

Semantics of :func:`build_histories`, for an event ``e`` of user ``u`` at time ``t``:

* the history holds ``u``'s events with timestamp ``< t`` (strictly earlier). Events of ``u``
  with the *same* timestamp ``t`` (including ``e`` itself) are never included, whatever their
  order in the file: ties are treated as simultaneous, so two events logged in the same second
  (one session) do not see each other;
* it keeps the ``max_len`` most recent of those, listed oldest first (ascending timestamp; among
  equal timestamps by the ``order`` column, i.e. file order), so ``history[-1]`` is the latest;
* the first event(s) of a user get an empty list.

Implemented as a Polars rolling window per user over the timestamp with ``closed="left"``
(window ``[t - span, t)`` with ``span`` covering the whole time range), aggregating
``item.tail(max_len)``: no Python loop over rows or users; windows are slices of the sorted
frame, so memory is ``O(rows * max_len)`` for the output only.

Example::

    frame = pl.DataFrame({"user": [0, 0, 0], "item": [5, 6, 7], "ts": [1, 1, 2]})
    build_histories(frame, "user", "item", "ts", order=None)["history"].to_list()
    # [[], [], [5, 6]]
"""

from __future__ import annotations

import polars as pl

from recsys.types import DataError

__all__ = ["HISTORY_COLUMN", "build_histories"]

#: Name of the column added by :func:`build_histories`.
HISTORY_COLUMN = "history"

_POS = "__history_pos"
_TS = "__history_ts"
_ORDER = "__history_order"


def build_histories(
    frame: pl.DataFrame,
    user: str,
    item: str,
    timestamp: str,
    order: str | None = "_row",
    max_len: int = 50,
    column: str = HISTORY_COLUMN,
) -> pl.DataFrame:
    """Adds ``column``: ``List(Int64)``, each event's previous ``max_len`` items of its user.

    Args:
        frame: one row per event; ``user`` and ``item`` hold integer indices (e.g. from an
            ``IdMap``), ``timestamp`` integers (e.g. unix seconds) or a temporal dtype.
        user, item, timestamp: column names.
        order: column giving file order, used to order events with equal timestamps inside a
            history; ``None`` (or a name absent from ``frame``) uses the row position.
        max_len: the number of most recent earlier items kept (>= 1).
        column: name of the new column (must not exist yet).

    Returns:
        ``frame`` with its rows in the same order and ``column`` appended. See the module
        docstring for the exact semantics (strictly earlier timestamps only, oldest first).

    Raises:
        DataError: a missing column, a null user, item or timestamp, or a non-integer item.
        ValueError: ``max_len < 1`` or ``column`` already present.
    """
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    if column in frame.columns:
        raise ValueError(f"column {column!r} already exists in the frame")
    for name in (user, item, timestamp):
        if name not in frame.columns:
            raise DataError(f"missing column; columns: {frame.columns}", field=name)
    if not frame.schema[item].is_integer():
        raise DataError(
            f"item must hold integer indices, got dtype {frame.schema[item]}", field=item
        )
    nulls = frame.select(pl.col(user, item, timestamp).null_count()).row(0)
    for name, count in zip((user, item, timestamp), nulls):
        if count:
            first = frame.select(pl.col(name).is_null().arg_max()).item()
            raise DataError(f"{count} null value(s); first at row {first} (0-based)", field=name)
    if frame.height == 0:
        return frame.with_columns(pl.lit([], dtype=pl.List(pl.Int64)).alias(column))

    ts = pl.col(timestamp)
    ts_int = ts.dt.epoch("us") if frame.schema[timestamp].is_temporal() else ts.cast(pl.Int64)
    use_order = order is not None and order in frame.columns
    work = frame.select(
        pl.col(user),
        pl.col(item).cast(pl.Int64),
        ts_int.alias(_TS),
        (pl.col(order) if use_order else pl.int_range(pl.len(), dtype=pl.Int64)).alias(_ORDER),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(_POS),
    ).sort([user, _TS, _ORDER, _POS])
    lo, hi = work.select(pl.col(_TS).min().alias("lo"), pl.col(_TS).max().alias("hi")).row(0)
    span = int(hi) - int(lo) + 1
    windows = work.rolling(index_column=_TS, period=f"{span}i", closed="left", group_by=user).agg(
        pl.col(item).tail(max_len).alias(column)
    )
    # Rolling keeps the (already sorted) row order; check it rather than trust it.
    if not (windows[user].equals(work[user]) and windows[_TS].equals(work[_TS])):
        raise RuntimeError("polars rolling returned rows out of order; cannot align histories")
    history = windows[column].cast(pl.List(pl.Int64))
    by_row = work.select(_POS).with_columns(history).sort(_POS)
    return frame.with_columns(by_row[column])
