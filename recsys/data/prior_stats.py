"""Point-in-time engagement history of an entity as dense features (``preprocess.prior_stats``).

For each key column ``k`` named in ``preprocess.prior_stats`` (a sparse column: a user, an item,
an author) and each event at time ``t``, two kinds of features from the events of the same
``k`` strictly before ``t`` (events at the same second do not see each other):

* ``<k>_prior_log_count``: ``log1p(n)``, ``n`` the number of earlier events;
* ``<k>_prior_<label>_rate``: ``(s + m * p0) / (n + m)``, ``s`` the sum of ``label`` over those
  events, ``p0`` the label's rate on the train split and ``m`` = ``preprocess.prior_smoothing``
  (an entity without history gets ``p0``).

Nothing after the event is read, so a served request can carry the same values (the counts
kept by a feature store as events arrive). Under a temporal split these carry what an id
embedding fitted on the train split cannot: the history that users and items build up during
the valid and test periods (MovieLens' global temporal split: test users are largely new).

The features are computed over the whole raw table (one sort by key and time, so the table's
keys, timestamps and labels must fit in memory) and written into the raw Parquet files before
the preprocessing is fitted, so they are standardized like any dense column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from recsys.data.source import ROW_COLUMN
from recsys.types import DataError, RawSchema

__all__ = ["add_prior_stats", "prior_stat_columns"]


def prior_stat_columns(keys: Sequence[str], labels: Sequence[str]) -> list[str]:
    """The dense columns :func:`add_prior_stats` adds, in order."""
    cols: list[str] = []
    for k in keys:
        cols.append(f"{k}_prior_log_count")
        cols.extend(f"{k}_prior_{label}_rate" for label in labels)
    return cols


def _check(schema: RawSchema, keys: Sequence[str]) -> None:
    if schema.timestamp is None:
        raise DataError(
            "preprocess.prior_stats needs a timestamp column (the history before each event); "
            "this source has none"
        )
    unknown = [k for k in keys if k not in schema.sparse]
    if unknown:
        raise DataError(
            f"preprocess.prior_stats names {unknown}, which are not sparse columns of the "
            f"source; known: {list(schema.sparse)}"
        )
    clash = set(prior_stat_columns(keys, schema.labels)) & set(schema.columns())
    if clash:
        raise DataError(f"preprocess.prior_stats would overwrite source columns {sorted(clash)}")


def prior_stats_frame(
    raw: pl.LazyFrame,
    schema: RawSchema,
    keys: Sequence[str],
    base_rates: Mapping[str, float],
    smoothing: float,
) -> pl.DataFrame:
    """``ROW_COLUMN`` plus :func:`prior_stat_columns` for every row of ``raw``."""
    _check(schema, keys)
    ts = schema.timestamp
    assert ts is not None
    labels = list(schema.labels)
    out = raw.select(ROW_COLUMN)
    for k in keys:
        groups = (
            raw.group_by([k, ts])
            .agg(
                pl.len().cast(pl.Float64).alias("_n"),
                *[pl.col(c).cast(pl.Float64).sum() for c in labels],
            )
            .sort([k, ts])
            .with_columns(
                (pl.col("_n").cum_sum().over(k) - pl.col("_n")).alias("_n"),
                *[(pl.col(c).cum_sum().over(k) - pl.col(c)).alias(c) for c in labels],
            )
        )
        rows = raw.select(ROW_COLUMN, k, ts).join(groups, on=[k, ts], how="left", nulls_equal=True)
        n = pl.col("_n").fill_null(0.0)
        stats = [(n + 1.0).log().alias(f"{k}_prior_log_count")]
        for c in labels:
            s = pl.col(c).fill_null(0.0)
            rate = (s + smoothing * base_rates[c]) / (n + smoothing)
            stats.append(rate.alias(f"{k}_prior_{c}_rate"))
        out = out.join(rows.select(ROW_COLUMN, *stats), on=ROW_COLUMN, how="left")
    return out.collect()


def add_prior_stats(
    raw_files: Sequence[Path],
    schema: RawSchema,
    keys: Sequence[str],
    base_rates: Mapping[str, float],
    smoothing: float,
    row_group_size: int | None = None,
) -> RawSchema:
    """Adds the prior-stat columns to every raw Parquet file (rewritten in place, rows in
    their order); returns ``schema`` with them as dense columns."""
    if not keys:
        return schema
    if smoothing < 0:
        raise DataError(f"preprocess.prior_smoothing must be >= 0, got {smoothing}")
    stats = prior_stats_frame(pl.scan_parquet(list(raw_files)), schema, keys, base_rates, smoothing)
    for path in raw_files:
        frame = pl.read_parquet(path)
        joined = frame.join(stats, on=ROW_COLUMN, how="left", maintain_order="left")
        tmp = Path(path).with_suffix(".tmp")
        joined.write_parquet(tmp, row_group_size=row_group_size)
        tmp.replace(path)
    new = tuple(prior_stat_columns(keys, schema.labels))
    return dataclasses.replace(schema, dense=(*schema.dense, *new))
