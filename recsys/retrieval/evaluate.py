"""Full-corpus evaluation of retrieval: who is evaluated, what counts, exact and ANN top-K.

For one split (valid or test) the users evaluated are those with at least one item they did not
know before (:func:`relevant_and_known`); the items they knew (valid: train; test: train +
valid) are removed from the candidates *and* from the relevant set. Top-K lists come from exact
inner-product search (:func:`exact_topk`), from an ANN index (:func:`evaluate_indexes`) or from a
baseline (:func:`baseline_metrics`: most-popular, implicit ALS, fitted on what is known before
the split), and are scored with Recall/NDCG/HitRate@K and MRR (:func:`evaluate_topk`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.data.progress import Progress
from recsys.data.retrieval_data import RetrievalData
from recsys.metrics.ranking import ranking_metrics, topk_from_scores
from recsys.retrieval.baselines import ImplicitMF, MostPopular
from recsys.retrieval.index import IndexConfig, VectorIndex
from recsys.retrieval.index_report import evaluate_index

__all__ = [
    "BASELINES",
    "DEFAULT_KS",
    "baseline_metrics",
    "evaluate_indexes",
    "evaluate_topk",
    "exact_topk",
    "relevant_and_known",
]

DEFAULT_KS = (10, 20, 50, 100)
BASELINES = ("most_popular", "als")


def relevant_and_known(
    target: sp.csr_matrix, known: sp.csr_matrix
) -> tuple[np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """``(users, relevant, exclude)`` of one evaluation split.

    ``users``: the users with at least one item of ``target`` that is not in ``known``;
    ``relevant``: those rows of ``target`` minus ``known`` (an item seen before cannot be
    recommended, so it cannot count); ``exclude``: those rows of ``known``.
    """
    fresh = (target - target.multiply(known.sign())).tocsr()
    fresh.eliminate_zeros()
    users = np.flatnonzero(np.diff(fresh.indptr) > 0)
    return users, fresh[users], known.tocsr()[users]


def evaluate_topk(
    topk: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int]
) -> dict[str, float | int]:
    """Recall/NDCG/HitRate@K and MRR of ``U x Kmax`` ids against ``U`` relevant rows."""
    return ranking_metrics(topk, relevant, ks)


def exact_topk(
    user_vecs: np.ndarray, item_vecs: np.ndarray, exclude: sp.csr_matrix, k: int
) -> np.ndarray:
    """Brute-force top-``k`` by inner product, ``exclude``'s entries removed: ``U x k``."""
    out = np.empty((user_vecs.shape[0], k), dtype=np.int64)
    step = max(1, (1 << 22) // max(1, item_vecs.shape[0]))
    for start in range(0, user_vecs.shape[0], step):
        scores = user_vecs[start : start + step] @ item_vecs.T
        out[start : start + step] = topk_from_scores(scores, k, exclude[start : start + step])
    return out


def _filter_ids(ids: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """The first ``k`` ids of each row not in ``exclude``'s row (``-1`` pads)."""
    out = np.full((ids.shape[0], k), -1, dtype=np.int64)
    for r in range(ids.shape[0]):
        seen = exclude.indices[exclude.indptr[r] : exclude.indptr[r + 1]]
        row = ids[r][(ids[r] >= 0) & ~np.isin(ids[r], seen)][:k]
        out[r, : row.shape[0]] = row
    return out


def evaluate_indexes(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    relevant: sp.csr_matrix,
    exclude: sp.csr_matrix,
    configs: Sequence[IndexConfig],
    ks: Sequence[int],
) -> dict[str, dict[str, Any]]:
    """Ranking metrics through each ANN index, plus the index's own figures.

    For every config: build a :class:`~recsys.retrieval.index.VectorIndex` over ``item_vecs``
    (``N x D``, ids = rows), report :func:`~recsys.retrieval.index_report.evaluate_index` on the
    ``U x D`` user vectors (``recall@10_vs_exact``: overlap of the index's raw top-10 with exact
    search, before any exclusion; ``build_seconds``, ``memory_bytes``, ``qps``), then search
    ``max(ks)`` + the most known items of any user, drop each user's known items (``exclude``)
    and compute the ranking metrics against ``relevant``. Keyed by the index's label.
    """
    k_max = max(ks)
    items = np.ascontiguousarray(item_vecs, dtype=np.float32)
    queries = np.ascontiguousarray(user_vecs, dtype=np.float32)
    fetch = min(items.shape[0], k_max + int(np.diff(exclude.indptr).max(initial=0)))
    exact10 = topk_from_scores(queries @ items.T, min(10, items.shape[0]))
    out: dict[str, dict[str, Any]] = {}
    progress = Progress(len(configs), "ANN indexes", unit="indexes")
    for cfg in configs:
        index = VectorIndex.build(items, np.arange(items.shape[0], dtype=np.int64), cfg)
        report = evaluate_index(index, exact10, queries, k=exact10.shape[1])
        _, found = index.search(queries, fetch)
        top = _filter_ids(found, exclude, k_max)
        out[cfg.label] = {
            **evaluate_topk(top, relevant, ks),
            "recall@10_vs_exact": report.recall_at_k,
            "build_seconds": report.build_seconds,
            "memory_bytes": report.memory_bytes,
            "qps": report.qps,
            "faiss_threads": report.threads,
            "params": report.params,
        }
        progress.update()
    progress.close()
    return out


def baseline_metrics(
    name: str, kwargs: Mapping[str, Any], data: RetrievalData, ks: Sequence[int], seed: int
) -> dict[str, Any]:
    """Valid (fit on train) and test (fit on train + valid) metrics of one baseline
    (``most_popular`` or ``als`` with :class:`~recsys.retrieval.baselines.ImplicitMF` keyword
    arguments), and the seconds both took."""
    if name not in BASELINES:
        raise ValueError(f"unknown retrieval baseline {name!r}; known: {list(BASELINES)}")
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    for split in ("valid", "test"):
        known = data.known(split)
        users, relevant, _ = relevant_and_known(data.splits[split], known)
        if name == "most_popular":
            model: MostPopular | ImplicitMF = MostPopular()
        else:
            model = ImplicitMF("als", **{"seed": seed, **dict(kwargs)})
        model.fit(known)
        top = model.recommend(users, max(ks), exclude=known)
        result[split] = evaluate_topk(top, relevant, ks)
    result["seconds"] = time.perf_counter() - t0
    return result
