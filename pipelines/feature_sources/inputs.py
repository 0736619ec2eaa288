"""Event tables (:class:`recsys.features.tables.EventTables`) and label tables from the two
origins: the synthetic world (follows without unfollows, times from the generator) and the
backend's events export (``part-*.parquet``, ``follows.parquet``, ``posts.parquet``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.synthetic import SocialConfig, SocialSource, entity_frames
from recsys.data.synthetic.schema import SOCIAL_SCHEMA, TRUTH_COLUMNS
from recsys.features.tables import EventTables
from recsys.types import DataError

LABEL_COLUMNS = (*SOCIAL_SCHEMA.labels, "user_id", "post_id", "author_id", "timestamp")


def synthetic_inputs(config: SocialConfig) -> tuple[EventTables, pl.DataFrame]:
    """The synthetic world's event tables and its impressions as the label table (labels,
    ids, ``timestamp`` and the truth columns ``p_*``), in time order."""
    source = SocialSource(config)
    world = source.world
    frames = entity_frames(world)
    order = np.lexsort((np.arange(len(world.follow_created)), world.follow_created))
    follows = pl.DataFrame(
        {
            "user_id": frames["follows"]["follower_id"].gather(order),
            "author_id": frames["follows"]["followee_id"].gather(order),
            "ts": world.follow_created[order].astype(np.int64),
            "seq": np.arange(1, len(order) + 1, dtype=np.int64),
            "following": np.ones(len(order), dtype=bool),
        }
    )
    labels = pl.concat([c.select(*LABEL_COLUMNS, *TRUTH_COLUMNS) for c in source.iter_chunks()])
    tables = EventTables(
        follows=follows,
        impressions=labels.select("user_id", pl.col("timestamp").alias("ts")),
        posts=frames["posts"].with_columns(pl.col("post_length").cast(pl.Float64)),
        users=frames["users"].select("user_id", "country", "age_bucket", "user_activity"),
    )
    return tables, labels


def _read(path: Path, what: str) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(
            f"{what} not found: export with `python -m pipelines.social_events` first",
            path=str(path),
        )
    return pl.read_parquet(path)


def export_inputs(export_dir: str | Path) -> tuple[EventTables, pl.DataFrame]:
    """The event tables and label table of a :mod:`pipelines.social_events` export folder.

    Impressions and the users' profile come from the rows, follow history from
    ``follows.parquet``, posts (with their exact creation time) from ``posts.parquet``.
    """
    folder = Path(export_dir).expanduser()
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        raise DataError("no part-*.parquet in the export folder", path=str(folder))
    rows = pl.read_parquet(parts)
    follows = _read(folder / "follows.parquet", "follow history")
    posts = _read(folder / "posts.parquet", "posts table")
    users = (
        rows.sort("timestamp")
        .select("user_id", "country", "age_bucket", "user_activity")
        .unique("user_id", keep="last", maintain_order=True)
    )
    tables = EventTables(
        follows=follows.select(
            "user_id", "author_id", pl.col("ts").cast(pl.Float64), "seq", "following"
        ),
        impressions=rows.select("user_id", pl.col("timestamp").alias("ts")),
        posts=posts.select(
            "post_id",
            "author_id",
            "topic",
            "media_type",
            pl.col("post_length").cast(pl.Float64),
            pl.col("created_at").cast(pl.Float64),
        ),
        users=users,
    )
    return tables, rows.select(LABEL_COLUMNS)
