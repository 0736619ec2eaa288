"""Offline gain of the funnel, scored by the synthetic world's ground truth.

For each held-out (user, time) the funnel runs once; three pages of ``sizes.page`` items are
scored with the *true* engagement probabilities of the generator's hidden model
(:func:`recsys.data.synthetic.truth.truth_probabilities`):

* ``retrieval``: the first items in retrieval order (after filters) — no ranker;
* ``ranked``: the top items by value — ranking without diversity;
* ``funnel``: the final, diversified page.

A page's offline value is ``sum over its items of value_formula(true probabilities)``; the
unweighted ``sum of true probabilities over tasks and items`` is reported too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic.schema import TASKS
from recsys.data.synthetic.truth import truth_probabilities
from recsys.data.synthetic.world import SocialWorld
from recsys.ranking.funnel import Funnel
from recsys.ranking.value import ValueFormula

__all__ = ["FunnelEvaluation", "TruthRanker", "evaluate_funnel", "social_truth"]

TruthFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]
METHODS = ("retrieval", "ranked", "funnel")


def social_truth(world: SocialWorld) -> TruthFn:
    """``truth(users N, items N, times N) -> {task: N true probabilities}`` of the world."""

    def truth(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        p = truth_probabilities(world, users, items, times)
        return {t: p[:, j] for j, t in enumerate(TASKS)}

    return truth


class TruthRanker:
    """Oracle :class:`~recsys.ranking.ranker.Ranker` returning the true probabilities.

    Useful to test the funnel mechanics deterministically and as the ranking upper bound.
    """

    def __init__(self, truth: TruthFn, tasks: tuple[str, ...] = TASKS) -> None:
        self.truth, self.tasks = truth, tuple(tasks)

    def score(self, user: int, item_ids: np.ndarray, now: int) -> dict[str, np.ndarray]:
        ids = np.asarray(item_ids, np.int64)
        return self.truth(np.full(len(ids), user), ids, np.full(len(ids), now))


@dataclass
class FunnelEvaluation:
    """Mean offline value per page for each method, over ``n_requests`` requests.

    Attributes:
        value: method -> mean true value (value formula) of the page.
        prob_sum: method -> mean sum of true probabilities (all tasks) over the page.
        page_len: method -> mean page length.
        latency_ms: stage -> mean latency of the funnel.
    """

    n_requests: int
    value: dict[str, float]
    prob_sum: dict[str, float]
    page_len: dict[str, float]
    latency_ms: dict[str, float]

    def gain(self, method: str, baseline: str) -> float:
        """Relative gain ``value[method] / value[baseline] - 1``."""
        base = self.value[baseline]
        return self.value[method] / base - 1.0 if base else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "n_requests": self.n_requests,
            "value": self.value,
            "prob_sum": self.prob_sum,
            "page_len": self.page_len,
            "latency_ms": self.latency_ms,
            "gain_funnel_vs_retrieval": self.gain("funnel", "retrieval"),
            "gain_ranked_vs_retrieval": self.gain("ranked", "retrieval"),
            "gain_funnel_vs_ranked": self.gain("funnel", "ranked"),
        }


def evaluate_funnel(
    funnel: Funnel,
    users: Sequence[int],
    now: int | Sequence[int],
    truth: TruthFn,
    value: ValueFormula | None = None,
) -> FunnelEvaluation:
    """Offline value of the funnel's pages against retrieval order and ranking-only.

    Args:
        funnel: the funnel to evaluate.
        users: held-out users (``R`` requests).
        now: request time(s): one for all, or ``R``.
        truth: ground-truth probabilities (e.g. :func:`social_truth`).
        value: value formula for scoring (default: the funnel's).
    """
    value = value if value is not None else funnel.value
    times = np.broadcast_to(np.asarray(now, np.int64), (len(users),))
    page = funnel.sizes.page
    sums = {m: {"value": 0.0, "prob": 0.0, "len": 0.0} for m in METHODS}
    lat: dict[str, float] = {}
    for user, t in zip(users, times):
        tr = funnel.trace(int(user), int(t))
        pages = {
            "retrieval": tr.candidates.ids[:page],
            "ranked": tr.candidates.ids[tr.ranked_idx[:page]],
            "funnel": tr.candidates.ids[tr.page_idx],
        }
        for m, ids in pages.items():
            if len(ids) == 0:
                continue
            p = truth(np.full(len(ids), user), ids, np.full(len(ids), t))
            sums[m]["value"] += float(value(p).sum())
            sums[m]["prob"] += float(sum(np.sum(v) for v in p.values()))
            sums[m]["len"] += len(ids)
        for k, v in tr.page.latency_ms.items():
            lat[k] = lat.get(k, 0.0) + v
    n = max(len(users), 1)
    return FunnelEvaluation(
        n_requests=len(users),
        value={m: s["value"] / n for m, s in sums.items()},
        prob_sum={m: s["prob"] / n for m, s in sums.items()},
        page_len={m: s["len"] / n for m, s in sums.items()},
        latency_ms={k: v / n for k, v in lat.items()},
    )
