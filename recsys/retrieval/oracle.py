"""The ceiling of retrieval on synthetic data: ranking by the generator's true probabilities.

On the synthetic social app the truth model is known (:mod:`recsys.data.synthetic.truth`), so
the best any retriever can do on the test split has a measurable stand-in: for each evaluated
user, score every catalog item by the true probability of a positive interaction (any of the
positive labels, ``1 - prod_t (1 - p_t)``) at the moment the user's test period starts
(follow state, follower counts and post ages as of then), drop what the user knew, and score
the top-K with the same metrics as the models (:func:`recsys.retrieval.evaluate.evaluate_topk`).

This is an oracle of *preference*, not of exposure: a logged positive needs an impression
first, which the truth probabilities do not model, so a retriever that learns who gets shown
what can come close to or even pass it on logged recall; it says how far a model is from
ranking by true engagement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from recsys.data.retrieval_data import RetrievalData
from recsys.data.synthetic.schema import TASKS
from recsys.data.synthetic.truth import truth_probabilities
from recsys.data.synthetic.world import SocialWorld
from recsys.metrics.ranking import topk_from_scores
from recsys.retrieval.evaluate import evaluate_topk, relevant_and_known

__all__ = ["oracle_metrics"]


def _test_start_times(
    data: RetrievalData, frame: pl.DataFrame, users: np.ndarray, relevant: Any
) -> np.ndarray:
    """Per evaluated user (``U``), the unix time of their first relevant test interaction."""
    spec = data.spec
    positives = frame
    if spec.positive_labels:
        positives = frame.filter(pl.any_horizontal(pl.col(c) > 0 for c in spec.positive_labels))
    u = data.users.to_index(positives[spec.user].cast(pl.Utf8), strict=False)
    i = data.items.to_index(positives[spec.item].cast(pl.Utf8), strict=False)
    t = positives[spec.timestamp].to_numpy().astype(np.int64)
    row_of = np.full(len(data.users), -1, dtype=np.int64)
    row_of[users] = np.arange(len(users))
    keep = (u >= 0) & (i >= 0)
    u, i, t = u[keep], i[keep], t[keep]
    rows = row_of[u]
    keep = rows >= 0
    rows, i, t = rows[keep], i[keep], t[keep]
    is_relevant = np.asarray(relevant[rows, i]).ravel() > 0
    start = np.full(len(users), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(start, rows[is_relevant], t[is_relevant])
    return start


def oracle_metrics(
    world: SocialWorld,
    data: RetrievalData,
    frame: pl.DataFrame,
    ks: Sequence[int],
    max_users: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Test metrics of ranking every item by its true engagement probability.

    Args:
        world: the generator's world the interactions were drawn from.
        data: the retrieval data built from ``frame``.
        frame: the raw impression rows (``user_id``, ``post_id``, labels, ``timestamp``).
        ks: metric cut-offs.
        max_users: evaluate a uniform sample of at most this many test users (``U x I``
            truth evaluations; all users when fewer).
        seed: the sample's seed.

    Returns:
        The metrics of :func:`~recsys.retrieval.evaluate.evaluate_topk` plus ``users`` (how
        many were scored) and ``sampled`` (whether they are a sample).
    """
    known = data.known("test")
    users, relevant, exclude = relevant_and_known(data.splits["test"], known)
    sampled = len(users) > max_users
    if sampled:
        pick = np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))
        users, relevant, exclude = users[pick], relevant[pick], exclude[pick]
    labels = data.spec.positive_labels or list(TASKS)
    unknown = sorted(set(labels) - set(TASKS))
    if unknown:
        raise ValueError(f"positive labels {unknown} are not tasks of the generator {TASKS}")
    tasks = [TASKS.index(name) for name in labels]
    user_ids = np.array([int(v) for v in data.users.ids], dtype=np.int64)[users]
    item_ids = np.array([int(v) for v in data.items.ids], dtype=np.int64)
    times = _test_start_times(data, frame, users, relevant)
    k_max = min(max(ks), len(item_ids))
    top = np.empty((len(users), k_max), dtype=np.int64)
    chunk = max(1, (1 << 21) // max(1, len(item_ids)))
    for start in range(0, len(users), chunk):
        rows = slice(start, start + chunk)
        n = len(user_ids[rows])
        p = truth_probabilities(
            world,
            np.repeat(user_ids[rows], len(item_ids)),
            np.tile(item_ids, n),
            np.repeat(times[rows], len(item_ids)),
        )
        none = np.prod(1.0 - p[:, tasks], axis=1)
        scores = (1.0 - none).reshape(n, len(item_ids))
        top[rows] = topk_from_scores(scores, k_max, exclude[rows])
    return evaluate_topk(top, relevant, ks) | {"users": len(users), "sampled": sampled}
