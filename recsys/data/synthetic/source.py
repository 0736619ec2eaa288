"""The synthetic social app as a raw source, and its entity tables as Parquet."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.source import ReadReport
from recsys.data.synthetic.calibration import build_world
from recsys.data.synthetic.config import AGE_BUCKETS, COUNTRIES, MEDIA_TYPES, SocialConfig
from recsys.data.synthetic.impressions import BLOCK_ROWS, block_frame, string_column
from recsys.data.synthetic.schema import ACTIVITY_LEVELS, SOCIAL_SCHEMA, TASKS
from recsys.data.synthetic.world import SocialWorld
from recsys.types import RawSchema


class SocialSource:
    """The synthetic social app as a :class:`recsys.data.source.RawSource`.

    ``iter_chunks`` yields frames of ``config.chunk_rows`` impressions (the last may be
    shorter) in timestamp order with columns ``SOCIAL_SCHEMA.columns()`` and ``_row``: labels
    ``like comment share save long_dwell`` (Float32 0/1), dense ``post_age_hours
    author_followers_log user_follow_count_log post_length`` (Float64), sparse ids and
    categories (Utf8), ``timestamp`` (Int64 unix seconds) and the truth probabilities
    ``p_<task>`` (Float32, aux: never a model input).
    """

    name = "synthetic_social"

    def __init__(self, config: SocialConfig | None = None) -> None:
        self.config = config if config is not None else SocialConfig()
        self.schema: RawSchema = SOCIAL_SCHEMA
        self.report = ReadReport()

    @cached_property
    def world(self) -> SocialWorld:
        """The entity tables and truth parameters, built on first use."""
        return build_world(self.config)

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        """Yields the impressions in time order, ``chunk_rows`` per frame. Resets ``report``."""
        self.report = ReadReport()
        cfg, world = self.config, self.world
        pending: list[pl.DataFrame] = []
        n_pending = 0
        n_blocks = -(-cfg.n_impressions // BLOCK_ROWS)
        for block in range(n_blocks):
            frame = block_frame(world, block)
            pending.append(frame)
            n_pending += frame.height
            while n_pending >= cfg.chunk_rows or (block == n_blocks - 1 and n_pending):
                merged = pl.concat(pending, rechunk=False) if len(pending) > 1 else pending[0]
                chunk, rest = merged.head(cfg.chunk_rows), merged.slice(cfg.chunk_rows)
                pending, n_pending = ([rest] if rest.height else []), rest.height
                self.report.rows_read += chunk.height
                yield chunk.rechunk()

    def describe(self) -> dict[str, object]:
        """JSON-able facts: the config, entity counts, solved task biases, schema, report."""
        w = self.world
        return {
            "generator": self.name,
            "config": dataclasses.asdict(self.config),
            "entities": {
                "users": self.config.n_users,
                "authors": len(w.author_user),
                "celebrities": int(w.author_celebrity.sum()),
                "posts": len(w.post_author),
                "follows": len(w.follow_user),
                "topics": self.config.n_topics,
            },
            "task_bias": {t: float(b) for t, b in zip(TASKS, w.bias)},
            "schema": self.schema.to_dict(),
            "report": self.report.to_dict(),
        }


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def entity_frames(world: SocialWorld) -> dict[str, pl.DataFrame]:
    """The observable entity tables of ``world``: ``users``, ``posts`` and ``follows``.

    Ids are Utf8 like in the impression frames (``author_id`` and ``followee_id`` are user
    ids); never the hidden latent variables. ``follows`` are in the world's edge order
    (follower, created_at).
    """
    w, config = world, world.config
    is_author = np.zeros(config.n_users, dtype=bool)
    is_author[w.author_user] = True
    followers = np.zeros(config.n_users, dtype=np.int64)
    followers[w.author_user] = w.follower_counts()
    users = pl.DataFrame(
        {
            "user_id": pl.Series(np.arange(config.n_users)).cast(pl.Utf8),
            "country": string_column(COUNTRIES, w.user_country),
            "age_bucket": string_column(AGE_BUCKETS, w.user_age),
            "user_activity": string_column(ACTIVITY_LEVELS, w.user_activity),
            "is_author": is_author,
            "follow_count": w.follow_counts().astype(np.int64),
            "follower_count": followers,
        }
    )
    topic_names = tuple(f"t{i:03d}" for i in range(config.n_topics))
    posts = pl.DataFrame(
        {
            "post_id": pl.Series(np.arange(len(w.post_author))).cast(pl.Utf8),
            "author_id": pl.Series(w.author_user[w.post_author]).cast(pl.Utf8),
            "topic": string_column(topic_names, w.post_topic),
            "media_type": string_column(MEDIA_TYPES, w.post_media),
            "post_length": w.post_length.astype(np.int64),
            "created_at": w.post_created.astype(np.int64),
        }
    )
    follows = pl.DataFrame(
        {
            "follower_id": pl.Series(w.follow_user).cast(pl.Utf8),
            "followee_id": pl.Series(w.author_user[w.follow_author]).cast(pl.Utf8),
            "created_at": w.follow_created.astype(np.int64),
        }
    )
    return {"users": users, "posts": posts, "follows": follows}


def write_entities(config: SocialConfig, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``users.parquet``, ``posts.parquet`` and ``follows.parquet``
    (:func:`entity_frames`) into ``out_dir``. Returns ``{"users": path, "posts": path,
    "follows": path}``.
    """
    frames = entity_frames(build_world(config))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.parquet" for name in frames}
    for name, frame in frames.items():
        _write_parquet(frame, paths[name])
    return paths
