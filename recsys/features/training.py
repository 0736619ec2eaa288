"""Point-in-time training sets: a label table joined to the store's features as of each
label's timestamp (Feast ``get_historical_features`` on the DuckDB offline store), and the
social rankers' data source built on it (:class:`FeastSocialSource`, ``data=feast_social``).

A label table has one row per impression: ``user_id post_id author_id`` (Utf8), the label
columns and ``timestamp`` (Int64 unix seconds); other columns are carried along. A feature row
counts for a label when its ``event_timestamp`` is at or before the label's ``timestamp`` (and
within the view's TTL); among those the latest wins, ties broken by the log's order.
"""

from __future__ import annotations

import glob
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from recsys.data.source import ROW_COLUMN, ReadReport
from recsys.data.synthetic.schema import SOCIAL_SCHEMA, TRUTH_COLUMNS, column_dtypes
from recsys.features.schema import (
    AUTHOR,
    DEFAULTS,
    EVENT_TIMESTAMP,
    FEATURE_REFS,
    PAIR,
    POST,
    REQUEST_TS,
    USER,
)
from recsys.features.store import FeatureStoreError, StoreSettings, check_refs, open_store
from recsys.types import RawSchema

if TYPE_CHECKING:
    from feast import FeatureStore

KEYS = (USER, POST, AUTHOR)


def check_labels(
    labels: pl.DataFrame,
    *,
    timestamp: str = "timestamp",
    now: float | None = None,
    path: str | None = None,
) -> None:
    """Raises :class:`FeatureStoreError` unless ``labels`` has the entity keys (Utf8, no
    nulls) and an integer ``timestamp`` column without nulls and not after ``now`` (default:
    the clock): a label from the future would read features nobody has yet."""
    if timestamp not in labels.columns:
        raise FeatureStoreError(
            f"label table lacks its event-timestamp column {timestamp!r} (has {labels.columns})",
            path=path,
            field=timestamp,
        )
    if not labels.schema[timestamp].is_integer():
        raise FeatureStoreError(
            f"event-timestamp column {timestamp!r} must be integer unix seconds, "
            f"got {labels.schema[timestamp]}",
            path=path,
            field=timestamp,
        )
    for key in KEYS:
        if key not in labels.columns:
            raise FeatureStoreError(
                f"label table lacks entity key {key!r} (has {labels.columns})", path=path, field=key
            )
        if labels.schema[key] != pl.Utf8:
            raise FeatureStoreError(
                f"entity key {key!r} must be Utf8, got {labels.schema[key]}", path=path, field=key
            )
    for column in (timestamp, *KEYS):
        nulls = labels[column].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise FeatureStoreError(f"null {column} in row {row}", path=path, field=column)
    if labels.height:
        limit = time.time() if now is None else now
        late = labels[timestamp] > math.floor(limit)
        if late.any():
            row = int(late.arg_true()[0])
            raise FeatureStoreError(
                f"timestamp {int(labels[timestamp][row])} of row {row} is in the future "
                f"(now is {int(limit)}): features as of that time do not exist yet",
                path=path,
                field=timestamp,
            )


def entity_frame(labels: pl.DataFrame, timestamp: str = "timestamp") -> pl.DataFrame:
    """The entity rows Feast joins on: the keys, the pair key, ``event_timestamp`` and
    ``request_ts`` (both the label's time) and ``_row`` (the label's position)."""
    return labels.select(
        *KEYS,
        pl.concat_str(pl.col(USER), pl.lit(":"), pl.col(AUTHOR)).alias(PAIR),
        pl.from_epoch(pl.col(timestamp), "s").cast(pl.Datetime("us", "UTC")).alias(EVENT_TIMESTAMP),
        pl.col(timestamp).cast(pl.Int64).alias(REQUEST_TS),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_COLUMN),
    )


def historical_features(
    store: FeatureStore,
    labels: pl.DataFrame,
    refs: Sequence[str],
    *,
    timestamp: str = "timestamp",
    now: float | None = None,
) -> pl.DataFrame:
    """``N x F``: the features ``refs`` (``view:feature``, named by feature) of each of the
    ``N`` label rows as of its ``timestamp``, in the labels' order (null where no row holds).

    Raises:
        FeatureStoreError: an unknown reference or a bad label table (:func:`check_labels`).
    """
    refs = check_refs(store, refs)
    check_labels(labels, timestamp=timestamp, now=now)
    entities = entity_frame(labels, timestamp)
    names = [r.partition(":")[2] for r in refs]
    if not labels.height:
        return pl.DataFrame(schema=dict.fromkeys(names, pl.Null))
    job = store.get_historical_features(entity_df=entities.to_pandas(), features=list(refs))
    result = pl.from_pandas(job.to_df())
    return result.sort(ROW_COLUMN).select(names)


def social_columns(
    labels: pl.DataFrame, features: pl.DataFrame, aux: Sequence[str]
) -> pl.DataFrame:
    """The social data set's columns (:data:`SOCIAL_SCHEMA`, its dtypes) from label rows and
    their features (:data:`FEATURE_REFS` names): counts missing get :data:`DEFAULTS`."""
    f = features
    count = {
        name: pl.col(name).cast(pl.Float64).fill_null(float(DEFAULTS[name]))
        for name in ("follower_count", "follow_count")
    }
    frame = pl.concat([labels, f], how="horizontal")
    dtypes = column_dtypes(truth=False)
    out = frame.select(
        *(pl.col(t).cast(pl.Float32) for t in SOCIAL_SCHEMA.labels),
        pl.col("post_age_hours").cast(pl.Float64),
        count["follower_count"].log1p().alias("author_followers_log"),
        count["follow_count"].log1p().alias("user_follow_count_log"),
        pl.col("post_length").cast(pl.Float64),
        *(pl.col(k).cast(pl.Utf8) for k in KEYS),
        *(
            pl.col(c).cast(pl.Utf8)
            for c in ("topic", "media_type", "country", "age_bucket", "user_activity")
        ),
        pl.when(pl.col("is_following").fill_null(DEFAULTS["is_following"]) > 0)
        .then(pl.lit("1"))
        .otherwise(pl.lit("0"))
        .alias("is_following"),
        pl.col(SOCIAL_SCHEMA.timestamp).cast(pl.Int64),
        *(pl.col(a) for a in aux),
    )
    return out.select(*dtypes, *aux).cast(dtypes)  # type: ignore[arg-type]


def _label_paths(labels: str | Path) -> list[Path]:
    pattern = str(Path(labels).expanduser())
    paths = (
        sorted(Path(p) for p in glob.glob(pattern))
        if any(c in pattern for c in "*?[")
        else [Path(pattern)]
    )
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        raise FeatureStoreError(f"label table {pattern} not found", path=pattern)
    return paths


class FeastSocialSource:
    """The social data set read through the feature store: a
    :class:`recsys.data.source.RawSource` with the columns of
    :class:`recsys.data.synthetic.SocialSource` (the truth columns ``p_*`` as aux where the
    label table has them), each feature as of its label's time.

    Args:
        repo: the store's data folder (:class:`~recsys.features.store.StoreSettings`).
        labels: the label table, a Parquet file or glob (default ``<repo>/labels.parquet``).
        online, redis_url, project: the online store (unused for training; the settings the
            store is opened with).
        chunk_rows: labels per ``get_historical_features`` call.
        now: the clock the labels' timestamps are checked against (default: the real one).
    """

    name = "feast_social"

    def __init__(
        self,
        repo: str | Path,
        labels: str | Path | None = None,
        online: str = "sqlite",
        redis_url: str | None = None,
        project: str = "social",
        chunk_rows: int = 250_000,
        now: float | None = None,
    ) -> None:
        if chunk_rows < 1:
            raise FeatureStoreError(
                f"chunk_rows must be >= 1, got {chunk_rows}", field="chunk_rows"
            )
        self.settings = StoreSettings(repo, online=online, redis_url=redis_url, project=project)
        self.label_paths = _label_paths(
            labels if labels is not None else self.settings.root / "labels.parquet"
        )
        names = pl.scan_parquet(self.label_paths).collect_schema().names()
        self.aux = tuple(c for c in TRUTH_COLUMNS if c in names)
        self.schema: RawSchema = RawSchema(
            labels=SOCIAL_SCHEMA.labels,
            dense=SOCIAL_SCHEMA.dense,
            sparse=SOCIAL_SCHEMA.sparse,
            timestamp=SOCIAL_SCHEMA.timestamp,
            aux=self.aux,
        )
        self.chunk_rows = chunk_rows
        self.now = now
        self.report = ReadReport()

    def _labels(self) -> pl.DataFrame:
        wanted = [*SOCIAL_SCHEMA.labels, *KEYS, SOCIAL_SCHEMA.timestamp, *self.aux]
        frame = pl.read_parquet(self.label_paths)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise FeatureStoreError(
                f"label table lacks {missing} (has {frame.columns})",
                path=str(self.label_paths[0]),
                field=missing[0],
            )
        check_labels(frame, now=self.now, path=str(self.label_paths[0]))
        return frame.select(wanted)

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        """Yields ``chunk_rows`` label rows at a time with their point-in-time features, in
        the label table's order, columns ``schema.columns()`` and ``_row``."""
        self.report = ReadReport()
        labels = self._labels()
        store = open_store(self.settings)
        refs = list(FEATURE_REFS.values())
        for lo in range(0, labels.height, self.chunk_rows):
            chunk = labels.slice(lo, self.chunk_rows)
            features = historical_features(store, chunk, refs, now=self.now)
            frame = social_columns(chunk, features, self.aux).with_columns(
                pl.int_range(lo, lo + chunk.height, dtype=pl.Int64).alias(ROW_COLUMN)
            )
            self.report.rows_read += frame.height
            yield frame

    def describe(self) -> dict[str, object]:
        """JSON-able facts: the store, the label files, the features read, schema, report."""
        return {
            "reader": self.name,
            "repo": str(self.settings.root),
            "labels": [str(p) for p in self.label_paths],
            "features": dict(FEATURE_REFS),
            "defaults": dict(DEFAULTS),
            "offline_store": "duckdb",
            "schema": self.schema.to_dict(),
            "report": self.report.to_dict(),
        }
