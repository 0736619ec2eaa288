"""The feature store's Parquet sources built from event tables (Polars and NumPy, no Feast).

Input, as :class:`EventTables` (ids Utf8, times unix seconds):

* ``follows``: ``user_id author_id ts seq following`` - one row per follow (``following``
  true) or unfollow (false) in log order ``(ts, seq)``; a pair may follow, unfollow and follow
  again, several times in the same second.
* ``impressions``: ``user_id ts`` - one row per impression.
* ``posts``: ``post_id author_id topic media_type post_length created_at``.
* ``users``: ``user_id country age_bucket user_activity``.

Output (:func:`build_sources`): one frame per table of :data:`recsys.features.schema.SOURCES`,
each row a value that holds from its ``event_timestamp`` on (until the entity's next row), so
a point-in-time join (the latest row at or before the label's time) reads the state as of that
time. Rows at the same ``event_timestamp`` are ordered by ``created`` (the log's ``seq``) where
that can happen. Window counts get a row at each event and at each moment an event leaves a
window, so the latest row is exact at any time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.features.schema import (
    ACTIVITY_WINDOWS,
    AUTHOR,
    CREATED,
    EVENT_TIMESTAMP,
    PAIR,
    POST,
    POSTING_WINDOW_S,
    SOURCES,
    USER,
)
from recsys.types import DataError

TIME = pl.Datetime("us", "UTC")

_EVENT_COLUMNS: dict[str, dict[str, tuple[type[pl.DataType], ...]]] = {
    "follows": {
        USER: (pl.Utf8,),
        AUTHOR: (pl.Utf8,),
        "ts": (pl.Float64, pl.Int64),
        "seq": (pl.Int64,),
        "following": (pl.Boolean,),
    },
    "impressions": {USER: (pl.Utf8,), "ts": (pl.Float64, pl.Int64)},
    "posts": {
        POST: (pl.Utf8,),
        AUTHOR: (pl.Utf8,),
        "topic": (pl.Utf8,),
        "media_type": (pl.Utf8,),
        "post_length": (pl.Float64,),
        "created_at": (pl.Float64, pl.Int64),
    },
    "users": {
        USER: (pl.Utf8,),
        "country": (pl.Utf8,),
        "age_bucket": (pl.Utf8,),
        "user_activity": (pl.Utf8,),
    },
}


@dataclass(frozen=True)
class EventTables:
    """What the sources are built from (columns: the module docstring)."""

    follows: pl.DataFrame
    impressions: pl.DataFrame
    posts: pl.DataFrame
    users: pl.DataFrame

    def check(self) -> None:
        """Raises :class:`DataError` naming the table and column that is missing or mistyped."""
        for table, columns in _EVENT_COLUMNS.items():
            frame: pl.DataFrame = getattr(self, table)
            for column, dtypes in columns.items():
                if column not in frame.columns:
                    raise DataError(
                        f"event table {table!r} lacks column {column!r} (has {frame.columns})",
                        field=column,
                    )
                if not isinstance(frame.schema[column], dtypes):
                    names = " or ".join(d.__name__ for d in dtypes)
                    raise DataError(
                        f"event table {table!r}: column {column!r} must be {names}, "
                        f"got {frame.schema[column]}",
                        field=column,
                    )


def event_time(seconds: pl.Expr) -> pl.Expr:
    """Unix seconds (int or float) -> UTC datetime in microseconds."""
    return pl.from_epoch((seconds.cast(pl.Float64) * 1e6).round().cast(pl.Int64), "us").cast(TIME)


def follow_tables(follows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``follow_pairs``, ``author_followers`` and ``user_follows`` from the follow log.

    A pair's state after each event is ``following``; the counts change by the state's change
    (a repeated follow changes nothing), accumulated in ``(ts, seq)`` order per author / user.
    """
    events = follows.select(
        pl.col(USER),
        pl.col(AUTHOR),
        pl.concat_str(pl.col(USER), pl.lit(":"), pl.col(AUTHOR)).alias(PAIR),
        pl.col("ts").cast(pl.Float64),
        pl.col("seq"),
        pl.col("following").cast(pl.Int64).alias("state"),
    ).sort([PAIR, "ts", "seq"])
    events = events.with_columns(
        (pl.col("state") - pl.col("state").shift(1).over(PAIR).fill_null(0)).alias("delta"),
        event_time(pl.col("ts")).alias(EVENT_TIMESTAMP),
        pl.from_epoch(pl.col("seq"), "us").cast(TIME).alias(CREATED),
    )
    pairs = events.select(
        PAIR, USER, AUTHOR, pl.col("state").alias("is_following"), EVENT_TIMESTAMP, CREATED
    )

    def running(key: str, name: str) -> pl.DataFrame:
        ordered = events.sort([key, "ts", "seq"])
        return ordered.select(
            key,
            pl.col("delta").cum_sum().over(key).alias(name),
            EVENT_TIMESTAMP,
            CREATED,
        )

    return {
        "follow_pairs": pairs,
        "author_followers": running(AUTHOR, "follower_count"),
        "user_follows": running(USER, "follow_count"),
    }


def window_counts(
    keys: pl.Series, seconds: pl.Series, windows: Mapping[str, int], prefix: str
) -> pl.DataFrame:
    """Per key, rows at each event time and each time an event leaves a window, with
    ``<prefix><name>`` = the key's events in ``(t - windows[name], t]`` (times floored to
    seconds). Columns: ``keys.name``, :data:`EVENT_TIMESTAMP`, the counts (Int64)."""
    name = keys.name
    columns = [f"{prefix}{w}" for w in windows]
    if keys.len() == 0:
        return pl.DataFrame(
            schema={name: pl.Utf8, EVENT_TIMESTAMP: TIME, **dict.fromkeys(columns, pl.Int64)}
        )
    codes = keys.rank("dense").cast(pl.Int64).to_numpy()
    names = keys.unique().sort().to_numpy()
    t = np.floor(seconds.cast(pl.Float64).to_numpy()).astype(np.int64)
    spans = np.fromiter(windows.values(), dtype=np.int64)
    base = int(t.min()) - int(spans.max()) - 1
    scale = int(t.max()) + int(spans.max()) - base + 1
    events = np.sort(codes * scale + (t - base))
    shifted = [t] + [t + s for s in spans]
    query = np.unique(np.tile(codes, len(shifted)) * scale + (np.concatenate(shifted) - base))
    out: dict[str, object] = {
        name: names[query // scale - 1],
        EVENT_TIMESTAMP: (query % scale + base),
    }
    upper = np.searchsorted(events, query, side="right")
    for column, span in zip(columns, spans):
        out[column] = upper - np.searchsorted(events, query - span, side="right")
    frame = pl.DataFrame(out)
    return frame.with_columns(
        pl.col(name).cast(pl.Utf8),
        event_time(pl.col(EVENT_TIMESTAMP)).alias(EVENT_TIMESTAMP),
        *(pl.col(c).cast(pl.Int64) for c in columns),
    )


def build_sources(tables: EventTables) -> dict[str, pl.DataFrame]:
    """Every source of :data:`SOURCES`, columns in its order plus :data:`EVENT_TIMESTAMP`."""
    tables.check()
    frames = follow_tables(tables.follows)
    frames["user_activity"] = window_counts(
        tables.impressions[USER], tables.impressions["ts"], ACTIVITY_WINDOWS, "impressions_"
    )
    frames["author_posting"] = window_counts(
        tables.posts[AUTHOR], tables.posts["created_at"], {"7d": POSTING_WINDOW_S}, "posts_"
    )
    frames["posts"] = tables.posts.select(
        POST,
        AUTHOR,
        "topic",
        "media_type",
        pl.col("post_length").cast(pl.Float64),
        pl.col("created_at").cast(pl.Float64).floor().cast(pl.Int64),
        event_time(pl.col("created_at")).alias(EVENT_TIMESTAMP),
    ).unique(POST, keep="last", maintain_order=True)
    frames["users"] = tables.users.select(
        USER,
        "country",
        "age_bucket",
        "user_activity",
        pl.lit(0).cast(pl.Int64).pipe(event_time).alias(EVENT_TIMESTAMP),
    ).unique(USER, keep="last", maintain_order=True)
    return {
        name: frames[name].select(*columns, EVENT_TIMESTAMP) for name, columns in SOURCES.items()
    }


def write_sources(frames: Mapping[str, pl.DataFrame], sources_dir: str | Path) -> dict[str, Path]:
    """Writes ``<sources_dir>/<name>.parquet`` for each frame (each file replaced atomically);
    returns the paths."""
    out = Path(sources_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in frames.items():
        path = out / f"{name}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, path)
        paths[name] = path
    return paths
