"""Configuration and vocabularies of the synthetic social app (its columns: :mod:`.schema`)."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.data.synthetic.schema import TASKS

COUNTRIES = ("US", "IN", "BR", "ID", "MX", "GB", "DE", "FR", "JP", "NG", "PH", "TR")
AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
MEDIA_TYPES = ("text", "image", "video", "carousel", "link")


@dataclass(frozen=True)
class SocialConfig:
    """Size and shape of the synthetic social app. Defaults suit a few-minute CPU quickstart.

    Attributes:
        seed: everything is a deterministic function of it.
        n_users: users (viewers); authors are a subset of them.
        n_authors: users who post.
        n_posts: posts, created from 7 days before the first impression to the last one.
        n_impressions: rows of the impression stream.
        n_topics: post topics.
        days: time span of the impressions.
        start_timestamp: unix seconds of the first impression window.
        follower_exponent: Pareto tail exponent of author popularity (smaller = heavier tail).
        n_celebrities: authors whose popularity is set so a large share of users follow them.
        mean_follows: mean number of follow attempts per user (before affinity filtering).
        follow_feed_share: probability that an impression comes from a followed author.
        chunk_rows: impressions per yielded chunk (does not change the data).
        latent_dim: dimension of the hidden taste / topic vectors.
        like_rate, comment_rate, share_rate, save_rate, long_dwell_rate: target base rates.
        signal_scale: multiplier on all non-bias truth terms (smaller = noisier labels).
    """

    seed: int = 0
    n_users: int = 20_000
    n_authors: int = 2_000
    n_posts: int = 50_000
    n_impressions: int = 1_000_000
    n_topics: int = 32
    days: float = 30.0
    start_timestamp: int = 1_700_000_000
    follower_exponent: float = 1.1
    n_celebrities: int = 10
    mean_follows: float = 40.0
    follow_feed_share: float = 0.65
    chunk_rows: int = 250_000
    latent_dim: int = 16
    like_rate: float = 0.08
    comment_rate: float = 0.015
    share_rate: float = 0.01
    save_rate: float = 0.02
    long_dwell_rate: float = 0.2
    signal_scale: float = 1.0

    def __post_init__(self) -> None:
        positive = ("n_users", "n_authors", "n_posts", "n_impressions", "n_topics", "chunk_rows")
        for name in (*positive, "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"SocialConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"SocialConfig.seed must be >= 0, got {self.seed}")
        if self.n_authors > self.n_users:
            raise ValueError(f"n_authors ({self.n_authors}) cannot exceed n_users ({self.n_users})")
        if not 0 <= self.n_celebrities <= self.n_authors // 2:
            raise ValueError(f"n_celebrities must be in [0, n_authors/2], got {self.n_celebrities}")
        for name in ("days", "follower_exponent", "mean_follows", "signal_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SocialConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.follow_feed_share <= 1.0:
            raise ValueError(f"follow_feed_share must be in [0, 1], got {self.follow_feed_share}")
        for rate in self.base_rates():
            if not 0.0 < rate < 1.0:
                raise ValueError(f"base rates must be in (0, 1), got {self.base_rates()}")

    def base_rates(self) -> tuple[float, ...]:
        """Target base rates in ``TASKS`` order."""
        return tuple(getattr(self, f"{t}_rate") for t in TASKS)

    @property
    def end_timestamp(self) -> int:
        """Unix seconds just after the last impression window."""
        return self.start_timestamp + round(self.days * 86_400)
