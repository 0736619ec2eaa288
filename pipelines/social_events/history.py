"""The tables beside an export that make its features known as of any time (the feature
store's input, :mod:`pipelines.feature_sources`):

* ``follows.parquet`` - the backend's follow log: ``user_id author_id`` (Utf8: follower and
  followee), ``ts`` (Float64 unix seconds), ``seq`` (Int64, the log's order) and ``following``
  (Boolean: a follow, or an unfollow), every change up to the export, in ``seq`` order.
* ``posts.parquet`` - the posts of the exported rows: ``post_id author_id topic media_type``
  (Utf8, null where empty), ``post_length`` (Int64 caption characters), ``created_at``
  (Float64 unix seconds).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipelines.social_events.attribution import Lookups
from serving.social.storage.interfaces import MetadataStore

FOLLOWS = "follows.parquet"
POSTS = "posts.parquet"
FOLLOW_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(),
    "author_id": pl.Utf8(),
    "ts": pl.Float64(),
    "seq": pl.Int64(),
    "following": pl.Boolean(),
}
POST_SCHEMA: dict[str, pl.DataType] = {
    "post_id": pl.Utf8(),
    "author_id": pl.Utf8(),
    "topic": pl.Utf8(),
    "media_type": pl.Utf8(),
    "post_length": pl.Int64(),
    "created_at": pl.Float64(),
}


def follow_frame(metadata: MetadataStore, batch: int) -> pl.DataFrame:
    """The whole follow log in :data:`FOLLOW_SCHEMA`."""
    cols: dict[str, list] = {name: [] for name in FOLLOW_SCHEMA}
    for changes in metadata.iter_follow_log(batch=batch):
        for c in changes:
            cols["user_id"].append(str(c.follower_id))
            cols["author_id"].append(str(c.followee_id))
            cols["ts"].append(float(c.ts))
            cols["seq"].append(int(c.seq))
            cols["following"].append(bool(c.following))
    return pl.DataFrame(cols, schema=FOLLOW_SCHEMA)


def post_frame(lookups: Lookups) -> pl.DataFrame:
    """The posts the export met (known to the store), by id, in :data:`POST_SCHEMA`."""
    posts = [p for _, p in sorted(lookups.posts.items()) if p is not None]
    return pl.DataFrame(
        {
            "post_id": [str(p.id) for p in posts],
            "author_id": [str(p.author_id) for p in posts],
            "topic": [p.topic or None for p in posts],
            "media_type": [p.media_type or None for p in posts],
            "post_length": [len(p.caption) for p in posts],
            "created_at": [float(p.created_at) for p in posts],
        },
        schema=POST_SCHEMA,
    )


def write_history(
    folder: Path, metadata: MetadataStore, lookups: Lookups, batch: int
) -> dict[str, int]:
    """Writes :data:`FOLLOWS` and :data:`POSTS` into ``folder``; returns their row counts."""
    follows, posts = follow_frame(metadata, batch), post_frame(lookups)
    follows.write_parquet(folder / FOLLOWS)
    posts.write_parquet(folder / POSTS)
    return {FOLLOWS: follows.height, POSTS: posts.height}
