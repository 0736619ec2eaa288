"""The synthetic social app: the project's embedded default data set.

A seeded world of users, authors (a subset of users who post), posts and a follow graph, and a
stream of impressions (a user saw a post) with five engagement labels drawn from a hidden
ground-truth model. Everything is vectorized numpy and deterministic by ``SocialConfig.seed``.

* Authors have power-law popularity (Pareto tail ``follower_exponent``) plus ``n_celebrities``
  who are followed by a large fraction of users. Users follow authors with probability rising
  with popularity and with the affinity between the user's taste and the author's topic.
* Impressions are generated in time order, block by block (each block covers its own time
  window and has its own random stream, so any chunk size yields the same rows). A user is
  drawn by activity; the post comes from a followed author (recency-biased) with probability
  ``follow_feed_share``, otherwise from "explore": the best of a few recent posts by topic
  affinity. Point-in-time features (``is_following``, follow and follower counts) use the
  follow edges' ``created_at``.
* The truth: per task, ``logit = bias + user engagement + per-task user effect + post quality
  + author effect + taste·post affinity + follow effect - age decay + post length + popularity
  + media x age-bucket + country x topic``. Shared terms correlate the tasks; the biases are
  solved so the base rates match the config. ``p_<task>`` columns carry the truth
  probabilities (aux, never model inputs); labels are ``Bernoulli(p)``.

Memory is bounded by the entity tables plus one chunk, so 10M+ impressions stream fine.

Example:
    >>> source = SocialSource(SocialConfig(n_users=500, n_authors=50, n_posts=800,
    ...                                    n_impressions=2000, chunk_rows=1000))
    >>> [f.height for f in source.iter_chunks()]
    [1000, 1000]
"""

from recsys.data.synthetic.calibration import build_world
from recsys.data.synthetic.config import AGE_BUCKETS, COUNTRIES, MEDIA_TYPES, SocialConfig
from recsys.data.synthetic.schema import (
    ACTIVITY_LEVELS,
    DENSE,
    SOCIAL_SCHEMA,
    SPARSE,
    TASKS,
    TIMESTAMP,
    TRUTH_COLUMNS,
)
from recsys.data.synthetic.source import SocialSource, entity_frames, write_entities
from recsys.data.synthetic.world import SocialWorld

__all__ = [
    "ACTIVITY_LEVELS",
    "AGE_BUCKETS",
    "COUNTRIES",
    "DENSE",
    "MEDIA_TYPES",
    "SOCIAL_SCHEMA",
    "SPARSE",
    "TASKS",
    "TIMESTAMP",
    "TRUTH_COLUMNS",
    "SocialConfig",
    "SocialSource",
    "SocialWorld",
    "build_world",
    "entity_frames",
    "write_entities",
]
