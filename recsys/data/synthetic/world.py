"""Entities of the synthetic social app: users, authors, posts, follows, truth parameters.

The bottom of the generator's import chain (``world <- impressions <- calibration``): the
impression model reads a :class:`SocialWorld`, and :mod:`.calibration` composes the two into
the finished world (task biases solved on simulated impressions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from recsys.data.synthetic.config import AGE_BUCKETS, COUNTRIES, MEDIA_TYPES, SocialConfig
from recsys.data.synthetic.sampling import (
    cumulative,
    draw,
    draw_rows,
    rng_for,
    zscore,
)
from recsys.data.synthetic.schema import ACTIVITY_QUANTILES, TASKS

_COUNTRY_WEIGHTS = np.array([18, 16, 11, 9, 7, 6, 6, 5, 6, 6, 5, 5], dtype=float)
_AGE_WEIGHTS = np.array([8, 28, 28, 18, 10, 8], dtype=float)
_MEDIA_LEN = np.array([220.0, 70.0, 50.0, 90.0, 120.0])  # median post length (chars) by media
_USER_BLOCK = 8_192  # users per block while sampling the follow graph
_PRE_DAYS_POSTS = 7.0  # posts exist this long before the first impression
_PRE_DAYS_FOLLOWS = 365.0
_FOLLOWS_BEFORE_START = 0.85
# Per-task loadings: user engagement, post quality, author effect, affinity, following,
# age decay, post length (z), author popularity (log followers, centered).
LOADINGS = np.array(
    [
        [0.8, 0.6, 0.3, 1.4, 0.5, 0.25, -0.10, -0.08],  # like
        [0.9, 0.4, 0.4, 1.1, 0.9, 0.35, 0.20, -0.12],  # comment
        [0.6, 0.9, 0.3, 1.0, 0.3, 0.30, 0.00, 0.05],  # share
        [0.5, 0.7, 0.2, 1.2, 0.2, 0.10, 0.30, 0.00],  # save
        [0.5, 0.5, 0.2, 0.9, 0.3, 0.05, 0.50, 0.00],  # long_dwell
    ]
)


@dataclass(eq=False)
class SocialWorld:
    """The entity tables and hidden truth parameters (index = entity id; post ids by time).

    Users ``U``, authors ``A`` (``author_user[a]`` is the author's user id), posts ``P``
    sorted by ``post_created``, follows ``E`` sorted by (follower, created_at), ``D`` latent
    dimension, ``T`` tasks.
    """

    config: SocialConfig
    user_country: np.ndarray  # U int
    user_age: np.ndarray  # U int
    user_activity: np.ndarray  # U int (0 low, 1 medium, 2 high)
    user_weight: np.ndarray  # U cumulative impression weights
    user_taste: np.ndarray  # U x D float32 (hidden)
    user_effect: np.ndarray  # U x T (hidden: shared engagement * loading + per-task effect)
    author_user: np.ndarray  # A
    author_effect: np.ndarray  # A (hidden)
    author_celebrity: np.ndarray  # A bool
    post_author: np.ndarray  # P author index
    post_topic: np.ndarray  # P
    post_media: np.ndarray  # P
    post_length: np.ndarray  # P chars
    post_created: np.ndarray  # P unix seconds, non-decreasing
    post_vec: np.ndarray  # P x D float32 (hidden)
    post_quality: np.ndarray  # P (hidden)
    posts_by_author: np.ndarray  # P post ids sorted by (author, created)
    follow_user: np.ndarray  # E follower user id
    follow_author: np.ndarray  # E followee author index
    follow_created: np.ndarray  # E unix seconds
    media_age: np.ndarray  # T x media x age (hidden cross)
    country_topic: np.ndarray  # T x country x topic (hidden cross)
    bias: np.ndarray  # T, solved so the base rates match the config

    @property
    def time_base(self) -> int:
        """Origin of the packed (entity, time) search keys; earlier than every timestamp."""
        return self.config.start_timestamp - round((_PRE_DAYS_FOLLOWS + 1) * 86_400)

    @cached_property
    def _key_scale(self) -> int:
        return self.config.end_timestamp - self.time_base + 1

    def time_keys(self, ids: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Packs (entity id, unix time) into one sortable int64 key per row."""
        return ids.astype(np.int64) * self._key_scale + (times - self.time_base)

    @cached_property
    def follow_keys(self) -> np.ndarray:
        """E packed (follower, created_at), sorted."""
        return self.time_keys(self.follow_user, self.follow_created)

    @cached_property
    def user_edge_start(self) -> np.ndarray:
        """U + 1 offsets of each user's edges in the (follower, created_at) order."""
        return np.searchsorted(self.follow_user, np.arange(self.config.n_users + 1))

    @cached_property
    def author_edge_start(self) -> np.ndarray:
        """A + 1 offsets of each author's edges in ``followee_order``."""
        order = self.followee_order
        return np.searchsorted(self.follow_author[order], np.arange(len(self.author_user) + 1))

    @cached_property
    def author_post_start(self) -> np.ndarray:
        """A + 1 offsets of each author's posts in ``posts_by_author``."""
        authors = self.post_author[self.posts_by_author]
        return np.searchsorted(authors, np.arange(len(self.author_user) + 1))

    @cached_property
    def pair_codes(self) -> np.ndarray:
        """E (follower * A + author) codes, sorted (``pair_order`` maps back to edges)."""
        return self.pair_codes_unsorted[self.pair_order]

    @cached_property
    def followee_order(self) -> np.ndarray:
        """Follow edges sorted by (author, created_at)."""
        return np.lexsort((self.follow_created, self.follow_author))

    @cached_property
    def followee_keys(self) -> np.ndarray:
        """E packed (author, created_at) in ``followee_order``, sorted."""
        order = self.followee_order
        return self.time_keys(self.follow_author[order], self.follow_created[order])

    @cached_property
    def pair_order(self) -> np.ndarray:
        """Follow edges sorted by (follower, author) code."""
        return np.argsort(self.pair_codes_unsorted, kind="stable")

    @cached_property
    def pair_codes_unsorted(self) -> np.ndarray:
        """E (follower * A + author) codes in edge order."""
        return self.follow_user.astype(np.int64) * len(self.author_user) + self.follow_author

    @cached_property
    def author_post_keys(self) -> np.ndarray:
        """P packed (author, created_at) in ``posts_by_author`` order."""
        p = self.posts_by_author
        return self.time_keys(self.post_author[p], self.post_created[p])

    def follower_counts(self, at: int | None = None) -> np.ndarray:
        """A follower counts of every author at time ``at`` (default: end of the window)."""
        at = self.config.end_timestamp if at is None else at
        mask = self.follow_created <= at
        return np.bincount(self.follow_author[mask], minlength=len(self.author_user))

    def follow_counts(self, at: int | None = None) -> np.ndarray:
        """U number of authors each user follows at time ``at`` (default: end of the window)."""
        at = self.config.end_timestamp if at is None else at
        mask = self.follow_created <= at
        return np.bincount(self.follow_user[mask], minlength=self.config.n_users)


def sample_entities(config: SocialConfig) -> SocialWorld:
    """Users, authors, posts, the follow graph and the truth parameters drawn from the seed, with
    the task biases still zero: :func:`recsys.data.synthetic.calibration.build_world` solves
    them on impressions of this world."""
    cfg = config
    rng = rng_for(cfg.seed, 1)
    n_t, d, k = len(TASKS), cfg.latent_dim, cfg.n_topics
    start, end = cfg.start_timestamp, cfg.end_timestamp

    # Topics: unit-ish latent vectors, Zipf-like popularity, country-specific preferences.
    topic_vec = rng.normal(0.0, 1.0 / math.sqrt(d), (k, d))
    topic_pop = 1.0 / np.arange(1, k + 1) ** 0.7
    country_pref = rng.normal(0.0, 0.8, (len(COUNTRIES), k))
    country_topic_cum = np.cumsum(topic_pop * np.exp(country_pref), axis=1)
    country_topic_cum /= country_topic_cum[:, -1:]

    # Users.
    n = cfg.n_users
    country = draw(cumulative(_COUNTRY_WEIGHTS), rng.random(n))
    age = draw(cumulative(_AGE_WEIGHTS), rng.random(n))
    log_rate = rng.normal(0.0, 0.9, n)
    activity = np.searchsorted(np.quantile(log_rate, ACTIVITY_QUANTILES), log_rate, side="right")
    fav1 = draw_rows(country_topic_cum, country, rng.random(n))
    fav2 = draw_rows(country_topic_cum, country, rng.random(n))
    taste = topic_vec[fav1] + 0.6 * topic_vec[fav2] + rng.normal(0.0, 0.35 / math.sqrt(d), (n, d))
    engagement = 0.35 * zscore(log_rate) + rng.normal(0.0, 0.5, n)
    user_effect = engagement[:, None] * LOADINGS[:, 0] + rng.normal(0.0, 0.3, (n, n_t))

    # Authors: Pareto popularity; celebrities take a fixed share of all follow draws each.
    author_user = np.sort(rng.choice(n, cfg.n_authors, replace=False))
    n_a = cfg.n_authors
    pop = (1.0 - rng.random(n_a)) ** (-1.0 / cfg.follower_exponent)
    celebrity = np.zeros(n_a, dtype=bool)
    if cfg.n_celebrities:
        celebrity[np.argsort(-pop, kind="stable")[: cfg.n_celebrities]] = True
        share = rng.uniform(0.006, 0.025, cfg.n_celebrities)
        share *= min(1.0, 0.5 / share.sum())
        pop[~celebrity] *= (1.0 - share.sum()) / pop[~celebrity].sum()
        pop[celebrity] = share
    author_effect = rng.normal(0.0, 0.4, n_a)
    primary = draw_rows(country_topic_cum, country[author_user], rng.random(n_a))
    secondary = draw(cumulative(topic_pop), rng.random(n_a))
    favorite_media = rng.integers(0, len(MEDIA_TYPES), n_a)

    # Posts: ids in creation order; prolific (and popular) authors post more.
    rate = np.exp(rng.normal(0.0, 0.8, n_a)) * (1.0 + 0.3 * np.log1p(pop / np.median(pop)))
    post_author = draw(cumulative(rate), rng.random(cfg.n_posts))
    roll = rng.random(cfg.n_posts)
    post_topic = np.where(
        roll < 0.6,
        primary[post_author],
        np.where(
            roll < 0.8, secondary[post_author], draw(cumulative(topic_pop), rng.random(cfg.n_posts))
        ),
    )
    post_media = np.where(
        rng.random(cfg.n_posts) < 0.6,
        favorite_media[post_author],
        rng.integers(0, len(MEDIA_TYPES), cfg.n_posts),
    )
    post_length = np.maximum(
        1, np.round(_MEDIA_LEN[post_media] * np.exp(rng.normal(0.0, 0.6, cfg.n_posts)))
    ).astype(np.int64)
    first_post = start - round(_PRE_DAYS_POSTS * 86_400)
    post_created = np.sort(rng.integers(first_post, end, cfg.n_posts))
    post_created[0] = first_post  # something is always available to explore
    post_vec = topic_vec[post_topic] + rng.normal(0.0, 0.5 / math.sqrt(d), (cfg.n_posts, d))
    post_quality = rng.normal(0.0, 0.6, cfg.n_posts) + 0.3 * (post_media == 2)
    posts_by_author = np.lexsort((post_created, post_author))

    # Follow graph: draws by popularity, accepted by taste affinity, deduplicated.
    author_vec = topic_vec[primary]
    pop_cum = cumulative(pop)
    intensity = cfg.mean_follows * np.exp(0.3 * zscore(log_rate))
    users_out, authors_out = [], []
    for lo in range(0, n, _USER_BLOCK):
        hi = min(n, lo + _USER_BLOCK)
        draws = rng.poisson(2.0 * intensity[lo:hi])
        u = np.repeat(np.arange(lo, hi), draws)
        a = draw(pop_cum, rng.random(u.shape[0]))
        aff = np.einsum("ij,ij->i", taste[u], author_vec[a])
        keep = (rng.random(u.shape[0]) < 1.0 / (1.0 + np.exp(-3.0 * (aff - 0.2)))) & (
            author_user[a] != u
        )
        codes = np.unique(u[keep].astype(np.int64) * n_a + a[keep])
        users_out.append(codes // n_a)
        authors_out.append(codes % n_a)
    follow_user = np.concatenate(users_out)
    follow_author = np.concatenate(authors_out)
    before = rng.random(follow_user.shape[0]) < _FOLLOWS_BEFORE_START
    follow_created = np.where(
        before,
        rng.integers(start - round(_PRE_DAYS_FOLLOWS * 86_400), start, follow_user.shape[0]),
        rng.integers(start, end, follow_user.shape[0]),
    )
    order = np.lexsort((follow_created, follow_user))

    # Hidden crosses: shared part plus task-specific part.
    n_m, n_g, n_c = len(MEDIA_TYPES), len(AGE_BUCKETS), len(COUNTRIES)
    media_age = rng.normal(0.0, 0.45, (1, n_m, n_g)) + rng.normal(0.0, 0.3, (n_t, n_m, n_g))
    media_age[:, 2, :2] += 0.4  # video for the young
    media_age[:, 0, 3:] += 0.3  # text for the older
    media_age[4, 2, :] += 0.5  # video holds attention
    country_topic = rng.normal(0.0, 0.45, (1, n_c, k)) + rng.normal(0.0, 0.25, (n_t, n_c, k))

    return SocialWorld(
        config=cfg,
        user_country=country,
        user_age=age,
        user_activity=activity,
        user_weight=cumulative(np.exp(log_rate)),
        user_taste=taste.astype(np.float32),
        user_effect=user_effect,
        author_user=author_user,
        author_effect=author_effect,
        author_celebrity=celebrity,
        post_author=post_author,
        post_topic=post_topic,
        post_media=post_media,
        post_length=post_length,
        post_created=post_created,
        post_vec=post_vec.astype(np.float32),
        post_quality=post_quality,
        posts_by_author=posts_by_author,
        follow_user=follow_user[order],
        follow_author=follow_author[order],
        follow_created=follow_created[order],
        media_age=media_age,
        country_topic=country_topic,
        bias=np.zeros(n_t),
    )
