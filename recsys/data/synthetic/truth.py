"""Ground-truth engagement probabilities of the synthetic social app for any (user, post, time).

The impression generator draws labels from hidden per-task probabilities (see
:mod:`recsys.data.synthetic.impressions`); this module evaluates the same truth model for
arbitrary triples, so offline policies (e.g. a recommendation funnel's page) can be scored by
their *true* expected engagement instead of by logged labels.

Example:
    >>> world = build_world(SocialConfig(n_users=200, n_authors=20, n_posts=300,
    ...                                  n_impressions=1000))
    >>> p = truth_probabilities(world, np.array([0, 1]), np.array([5, 6]),
    ...                         np.array([world.config.end_timestamp] * 2))
    >>> p.shape
    (2, 5)
"""

from __future__ import annotations

import numpy as np

from recsys.data.synthetic.impressions import hidden_logits, point_in_time_follows
from recsys.data.synthetic.schema import TASKS
from recsys.data.synthetic.world import SocialWorld

__all__ = ["truth_logits", "truth_probabilities"]


def truth_logits(
    world: SocialWorld, users: np.ndarray, posts: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """``N x T`` truth logits (bias included, ``T = len(TASKS)``) for ``N`` triples.

    Args:
        world: the synthetic world (entity tables and hidden parameters).
        users: ``N`` user ids in ``[0, n_users)``.
        posts: ``N`` post ids in ``[0, n_posts)``.
        times: ``N`` unix seconds (a scalar broadcasts). Point-in-time features (following,
            follower counts, post age) are evaluated at these times; a post younger than
            0 hours (created after ``time``) is treated as age 0.

    Raises:
        ValueError: on ids out of range or mismatched lengths.
    """
    w = world
    users = np.asarray(users, dtype=np.int64).ravel()
    posts = np.asarray(posts, dtype=np.int64).ravel()
    times = np.broadcast_to(np.asarray(times, dtype=np.int64), users.shape).copy()
    if users.shape != posts.shape:
        raise ValueError(
            f"users and posts must have the same length, got {users.shape} and {posts.shape}"
        )
    n_users, n_posts = w.config.n_users, len(w.post_author)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(
            f"user ids must be in [0, {n_users}), got range [{users.min()}, {users.max()}]"
        )
    if posts.size and (posts.min() < 0 or posts.max() >= n_posts):
        raise ValueError(
            f"post ids must be in [0, {n_posts}), got range [{posts.min()}, {posts.max()}]"
        )
    if users.size == 0:
        return np.zeros((0, len(TASKS)))
    author = w.post_author[posts]
    following, followers = point_in_time_follows(w, users, author, times)
    age_hours = np.maximum(times - w.post_created[posts], 0) / 3600.0
    logit = hidden_logits(w, users, posts, author, following, followers, age_hours)
    return w.config.signal_scale * logit + w.bias


def truth_probabilities(
    world: SocialWorld, users: np.ndarray, posts: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """``N x T`` ground-truth probabilities (columns in ``TASKS`` order); see :func:`truth_logits`.

    For rows of the impression stream these equal the ``p_<task>`` columns (up to float32).
    """
    return 1.0 / (1.0 + np.exp(-truth_logits(world, users, posts, times)))
