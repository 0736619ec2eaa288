"""Impressions and the hidden truth model of the synthetic social app, block by block."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.source import ROW_COLUMN
from recsys.data.synthetic.config import AGE_BUCKETS, COUNTRIES, MEDIA_TYPES
from recsys.data.synthetic.sampling import draw, rng_for, search_sorted
from recsys.data.synthetic.schema import (
    ACTIVITY_LEVELS,
    TASKS,
    TIMESTAMP,
    TRUTH_COLUMNS,
    column_dtypes,
)
from recsys.data.synthetic.world import LOADINGS, SocialWorld

BLOCK_ROWS = 65_536  # generation unit; chunks are re-cut from blocks, so data ignore chunk_rows
_FEED_AGE_HOURS = 18.0  # mean target age of a post picked from a followed author
_EXPLORE_AGE_HOURS = 36.0
_EXPLORE_CANDIDATES = 4


def simulate_impressions(
    w: SocialWorld, rng: np.random.Generator, n: int, t_lo: int, t_hi: int
) -> dict[str, np.ndarray]:
    """``n`` impressions with timestamps in ``[t_lo, t_hi)``, sorted by time.

    Returns entity indices, point-in-time features and ``logit`` (``n x T``, without bias).
    """
    cfg = w.config
    ts = np.sort(rng.integers(t_lo, max(t_hi, t_lo + 1), n))
    user = draw(w.user_weight, rng.random(n))

    # Follows active at ts are a prefix of the user's edges (sorted by created_at).
    user_start = w.user_edge_start[user]
    follow_count = search_sorted(w.follow_keys, w.time_keys(user, ts), "right") - user_start

    # Followed-author path: a recency-biased post of a random followed author.
    n_edges = max(len(w.follow_user), 1)
    edge = np.minimum(user_start + (rng.random(n) * follow_count).astype(np.int64), n_edges - 1)
    author = w.follow_author[edge] if len(w.follow_user) else np.zeros(n, dtype=np.int64)
    target = ts - (rng.exponential(_FEED_AGE_HOURS, n) * 3600).astype(np.int64)
    keys = w.author_post_keys
    first = w.author_post_start[author]
    last = search_sorted(keys, w.time_keys(author, ts), "right") - 1
    pick = np.clip(search_sorted(keys, w.time_keys(author, target), "right") - 1, first, last)
    use_feed = (rng.random(n) < cfg.follow_feed_share) & (follow_count > 0) & (last >= first)
    feed_post = w.posts_by_author[np.clip(pick, 0, len(keys) - 1)]

    # Explore path: the best of a few recent posts by affinity, with noise.
    cand_shape = (n, _EXPLORE_CANDIDATES)
    cand_age = (rng.exponential(_EXPLORE_AGE_HOURS, cand_shape) * 3600).astype(np.int64)
    available = np.searchsorted(w.post_created, ts, side="right")
    cand = search_sorted(w.post_created, ts[:, None] - cand_age, "right") - 1
    cand = np.clip(cand, 0, np.maximum(available - 1, 0)[:, None])
    score = np.einsum("nd,nkd->nk", w.user_taste[user], w.post_vec[cand])
    score += rng.gumbel(0.0, 0.5, cand_shape)
    explore_post = cand[np.arange(n), score.argmax(axis=1)]
    post = np.where(use_feed, feed_post, explore_post)
    author = w.post_author[post]

    following, followers = point_in_time_follows(w, user, author, ts)
    age_hours = (ts - w.post_created[post]) / 3600.0
    logit = hidden_logits(w, user, post, author, following, followers, age_hours)
    return {
        "timestamp": ts,
        "user": user,
        "post": post,
        "author": author,
        "following": following,
        "follow_count": follow_count,
        "followers": followers,
        "age_hours": age_hours,
        "logit": cfg.signal_scale * logit,
    }


def point_in_time_follows(
    w: SocialWorld, users: np.ndarray, author: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each user follows the author at ``times`` (``N`` bool) and the author's follower
    count then (``N`` int): the point-in-time features the truth model and the logs share."""
    n_a = len(w.author_user)
    codes = w.pair_codes
    if len(codes):
        query = users.astype(np.int64) * n_a + author
        pos = np.minimum(search_sorted(codes, query), len(codes) - 1)
        following = (codes[pos] == query) & (w.follow_created[w.pair_order[pos]] <= times)
    else:
        following = np.zeros(users.shape[0], dtype=bool)
    followers = search_sorted(w.followee_keys, w.time_keys(author, times), "right")
    return following, followers - w.author_edge_start[author]


def hidden_logits(
    w: SocialWorld,
    users: np.ndarray,
    posts: np.ndarray,
    author: np.ndarray,
    following: np.ndarray,
    followers: np.ndarray,
    age_hours: np.ndarray,
) -> np.ndarray:
    """``N x T`` hidden truth logits before the task bias and ``signal_scale``: the one place
    the ground-truth model is written (impressions and :mod:`.truth` both call it)."""
    x = np.stack(
        [
            w.post_quality[posts],
            w.author_effect[author],
            np.einsum("nd,nd->n", w.user_taste[users], w.post_vec[posts]),
            following.astype(np.float64),
            -np.log1p(age_hours / 6.0),
            (np.log(w.post_length[posts]) - 4.4) / 0.8,
            np.log1p(followers) - 5.0,
        ],
        axis=1,
    )
    # einsum, not BLAS: tiny inner dimension, and BLAS threads only add overhead here.
    logit = np.einsum("nk,tk->nt", x, LOADINGS[:, 1:]) + w.user_effect[users]
    media, topic = w.post_media[posts], w.post_topic[posts]
    logit += w.media_age[:, media, w.user_age[users]].T
    logit += w.country_topic[:, w.user_country[users], topic].T
    return logit


def string_column(names: tuple[str, ...], idx: np.ndarray) -> pl.Series:
    """A Utf8 series ``names[idx]``, built by Polars (no Python string per row)."""
    return pl.Series(names).gather(pl.Series(idx.astype(np.uint32)))


def block_frame(w: SocialWorld, block: int) -> pl.DataFrame:
    """Impression rows ``[block * BLOCK_ROWS, ...)`` as a frame in schema order plus ``_row``."""
    cfg = w.config
    r0 = block * BLOCK_ROWS
    r1 = min(cfg.n_impressions, r0 + BLOCK_ROWS)
    span = cfg.end_timestamp - cfg.start_timestamp
    t_lo = cfg.start_timestamp + (span * r0) // cfg.n_impressions
    t_hi = cfg.start_timestamp + (span * r1) // cfg.n_impressions
    rng = rng_for(cfg.seed, 3, block)
    imp = simulate_impressions(w, rng, r1 - r0, t_lo, t_hi)
    prob = 1.0 / (1.0 + np.exp(-(imp["logit"] + w.bias)))
    label = rng.random(prob.shape) < prob
    user, post, author = imp["user"], imp["post"], imp["author"]
    cols: dict[str, pl.Series | np.ndarray] = {}
    for j, task in enumerate(TASKS):
        cols[task] = label[:, j].astype(np.float32)
    cols["post_age_hours"] = imp["age_hours"]
    cols["author_followers_log"] = np.log1p(imp["followers"].astype(np.float64))
    cols["user_follow_count_log"] = np.log1p(imp["follow_count"].astype(np.float64))
    cols["post_length"] = w.post_length[post].astype(np.float64)
    cols["user_id"] = pl.Series(user).cast(pl.Utf8)
    cols["post_id"] = pl.Series(post).cast(pl.Utf8)
    cols["author_id"] = pl.Series(w.author_user[author]).cast(pl.Utf8)
    topic_names = tuple(f"t{i:03d}" for i in range(cfg.n_topics))
    cols["topic"] = string_column(topic_names, w.post_topic[post])
    cols["media_type"] = string_column(MEDIA_TYPES, w.post_media[post])
    cols["country"] = string_column(COUNTRIES, w.user_country[user])
    cols["age_bucket"] = string_column(AGE_BUCKETS, w.user_age[user])
    cols["user_activity"] = string_column(ACTIVITY_LEVELS, w.user_activity[user])
    cols["is_following"] = string_column(("0", "1"), imp["following"].astype(np.int64))
    cols[TIMESTAMP] = imp["timestamp"].astype(np.int64)
    for j, name in enumerate(TRUTH_COLUMNS):
        cols[name] = prob[:, j].astype(np.float32)
    cols[ROW_COLUMN] = np.arange(r0, r1, dtype=np.int64)
    return pl.DataFrame(cols, schema={**column_dtypes(), ROW_COLUMN: pl.Int64()})
