"""Candidate sources of the funnel's retrieval stage, and their merge with deduplication.

A source answers ``candidates(user, k, now) -> (item ids, scores)``: at most ``k`` items, best
first. Sources here:

* :class:`AnnSource`: nearest items to the user's embedding in a :class:`CandidateIndex`.
* :class:`PopularRecentSource`: the most engaged items in a recent time window.
* :class:`ItemToItemSource`: nearest items to the vectors of the user's last ``n_recent``
  engaged items (same index); a user without history gets nothing.

Scores of different sources are not comparable (cosine vs. engagement counts), so
:func:`merge_candidates` deduplicates by *within-source rank*: an item found by several sources
keeps the source where it ranked best (ties: the earlier source), and records all of them.
The merged "retrieval order" interleaves the sources by rank (round robin).

Item ids are non-negative integers (post ids of the synthetic app).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from recsys.retrieval.index import VectorIndex

__all__ = [
    "AnnSource",
    "BruteForceIndex",
    "CandidateIndex",
    "CandidateSource",
    "Candidates",
    "InteractionLog",
    "ItemToItemSource",
    "PopularRecentSource",
    "UnknownUserError",
    "build_index",
    "merge_candidates",
]


class UnknownUserError(KeyError):
    """Raised for a user id that a source or ranker has no data for."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown user"


@runtime_checkable
class CandidateIndex(Protocol):
    """A nearest-neighbour index: ``search(queries Q x D, k) -> (scores Q x k', ids Q x k')``.

    ``k' = min(k, index size)``; rows are best first. ``recsys.retrieval.index.VectorIndex``
    satisfies it; :class:`BruteForceIndex` is the exact reference.
    """

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class BruteForceIndex:
    """Exact inner-product search over ``N x D`` vectors with ``N`` integer ids."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be N x D, got shape {vectors.shape}")
        self.vectors = vectors
        self.ids = (
            np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        )
        if self.ids.shape != (len(vectors),):
            raise ValueError(f"ids must have length {len(vectors)}, got {self.ids.shape}")

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries``: ``Q x D`` -> ``(scores, ids)`` each ``Q x min(k, N)``, best first."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(int(k), len(self.ids))
        if k <= 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        scores = q @ self.vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, top, axis=1), self.ids[top]


def build_index(vectors: np.ndarray, ids: np.ndarray | None = None) -> CandidateIndex:
    """An exact FAISS index (:class:`recsys.retrieval.index.VectorIndex`, kind ``flat``) over
    ``vectors`` (``N x D``) with item ``ids`` (``N``; default ``0..N-1``)."""
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    return VectorIndex.build(np.asarray(vectors, dtype=np.float32), ids)


@runtime_checkable
class CandidateSource(Protocol):
    """``candidates(user, k, now) -> (ids, scores)``: at most ``k`` distinct items, best first."""

    name: str

    def candidates(self, user: int, k: int, now: int) -> tuple[np.ndarray, np.ndarray]: ...


class InteractionLog:
    """Impressions ``(user, item, time, engagement weight)`` with per-user time order.

    ``weight > 0`` means the user engaged with the item; every row counts as *seen*.
    Arrays are sorted by (user, time); the time-sorted copy backs popularity windows.
    """

    def __init__(
        self, users: np.ndarray, items: np.ndarray, times: np.ndarray, weights: np.ndarray
    ) -> None:
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        times, weights = np.asarray(times, np.int64), np.asarray(weights, np.float64)
        if not users.shape == items.shape == times.shape == weights.shape:
            raise ValueError("users, items, times and weights must have the same length")
        order = np.lexsort((times, users))
        self.users, self.items = users[order], items[order]
        self.times, self.weights = times[order], weights[order]
        by_time = np.argsort(times, kind="stable")
        self.t_times, self.t_items = times[by_time], items[by_time]
        self.t_weights = weights[by_time]

    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame,
        engagement: Sequence[str],
        user_col: str = "user_id",
        item_col: str = "post_id",
        time_col: str = "timestamp",
    ) -> InteractionLog:
        """From an impression frame; weight = sum of the ``engagement`` label columns."""
        missing = [c for c in (user_col, item_col, time_col, *engagement) if c not in frame.columns]
        if missing:
            raise ValueError(f"interaction frame lacks columns {missing}")
        weight = pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in engagement])
        f = frame.select(
            pl.col(user_col).cast(pl.Int64).alias("u"),
            pl.col(item_col).cast(pl.Int64).alias("i"),
            pl.col(time_col).cast(pl.Int64).alias("t"),
            weight.alias("w"),
        )
        return cls(f["u"].to_numpy(), f["i"].to_numpy(), f["t"].to_numpy(), f["w"].to_numpy())

    def _span(self, user: int, now: int) -> slice:
        lo = np.searchsorted(self.users, user, side="left")
        hi = np.searchsorted(self.users, user, side="right")
        hi = lo + np.searchsorted(self.times[lo:hi], now, side="left")
        return slice(int(lo), int(hi))

    def seen(self, user: int, now: int) -> np.ndarray:
        """Items the user was shown strictly before ``now`` (unique, sorted)."""
        return np.unique(self.items[self._span(user, now)])

    def recent_engaged(self, user: int, now: int, n: int) -> np.ndarray:
        """Up to ``n`` distinct items the user engaged with before ``now``, most recent first."""
        s = self._span(user, now)
        items = self.items[s][self.weights[s] > 0][::-1]
        _, first = np.unique(items, return_index=True)
        return items[np.sort(first)][:n]


class AnnSource:
    """Nearest items to the user's embedding.

    Args:
        index: over item vectors (``D``).
        user_vectors: ``U x D``; row ``u`` is user ``u``.
        name: source name.

    Raises :class:`UnknownUserError` for a user outside ``[0, U)``.
    """

    def __init__(self, index: CandidateIndex, user_vectors: np.ndarray, name: str = "ann") -> None:
        self.index = index
        self.user_vectors = np.asarray(user_vectors, dtype=np.float32)
        self.name = name

    def candidates(self, user: int, k: int, now: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= user < len(self.user_vectors):
            raise UnknownUserError(
                f"user {user} has no embedding (known users: 0..{len(self.user_vectors) - 1})"
            )
        scores, ids = self.index.search(self.user_vectors[user][None, :], k)
        return np.asarray(ids[0], np.int64), np.asarray(scores[0], np.float64)


class PopularRecentSource:
    """Items with the largest engagement weight in ``[now - window_s, now)`` (same for all users).

    Ties are broken by item id. ``k`` larger than the number of engaged items returns them all.
    """

    def __init__(self, log: InteractionLog, window_s: int = 86_400, name: str = "popular") -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.log, self.window_s, self.name = log, int(window_s), name

    def candidates(self, user: int, k: int, now: int) -> tuple[np.ndarray, np.ndarray]:
        log = self.log
        lo = np.searchsorted(log.t_times, now - self.window_s, side="left")
        hi = np.searchsorted(log.t_times, now, side="left")
        items, w = log.t_items[lo:hi], log.t_weights[lo:hi]
        keep = w > 0
        if not keep.any() or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        uniq, inv = np.unique(items[keep], return_inverse=True)
        total = np.bincount(inv, weights=w[keep])
        order = np.lexsort((uniq, -total))[:k]
        return uniq[order], total[order]


class ItemToItemSource:
    """Nearest items to the user's ``n_recent`` last engaged items (before ``now``).

    Each history item's vector queries the index for ``ceil(k / h) + h`` neighbours; results are
    merged by max similarity, the history items themselves are excluded. An empty history
    returns nothing.

    Args:
        index: over item vectors.
        item_vectors: ``P x D`` vectors of the history items (row = item id).
        log: interactions giving each user's history.
    """

    def __init__(
        self,
        index: CandidateIndex,
        item_vectors: np.ndarray,
        log: InteractionLog,
        n_recent: int = 5,
        name: str = "item2item",
    ) -> None:
        if n_recent < 1:
            raise ValueError(f"n_recent must be >= 1, got {n_recent}")
        self.index, self.log, self.n_recent, self.name = index, log, n_recent, name
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)

    def candidates(self, user: int, k: int, now: int) -> tuple[np.ndarray, np.ndarray]:
        hist = self.log.recent_engaged(user, now, self.n_recent)
        hist = hist[hist < len(self.item_vectors)]
        if len(hist) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        per = math.ceil(k / len(hist)) + len(hist)
        scores, ids = self.index.search(self.item_vectors[hist], per)
        ids, scores = np.asarray(ids).ravel(), np.asarray(scores, np.float64).ravel()
        keep = ~np.isin(ids, hist)
        ids, scores = ids[keep], scores[keep]
        order = np.lexsort((ids, -scores))
        ids, scores = ids[order], scores[order]
        _, first = np.unique(ids, return_index=True)
        first = np.sort(first)[:k]
        return ids[first], scores[first]


@dataclass
class Candidates:
    """Merged, deduplicated candidates in retrieval order (``N`` items).

    Attributes:
        ids: ``N`` item ids.
        scores: ``N`` score from the kept (best-rank) source.
        source: ``N`` name of the kept source.
        source_rank: ``N`` rank of the item within the kept source (0 = its best).
        sources: ``N`` tuples of every source that produced the item.
    """

    ids: np.ndarray
    scores: np.ndarray
    source: list[str]
    source_rank: np.ndarray
    sources: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> Candidates:
        """Rows ``idx`` (an index array or boolean mask), order kept."""
        idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx, np.int64)
        return Candidates(
            self.ids[idx],
            self.scores[idx],
            [self.source[i] for i in idx],
            self.source_rank[idx],
            [self.sources[i] for i in idx],
        )


def merge_candidates(
    results: Mapping[str, tuple[np.ndarray, np.ndarray]], quotas: Mapping[str, int] | None = None
) -> Candidates:
    """Merges per-source ``(ids, scores)`` (best first) into deduplicated :class:`Candidates`.

    Each source's list is first cut to its quota (when given). An item keeps the source where
    its rank is smallest (ties: the source listed first in ``results``); ``sources`` records all.
    Output order: by (kept rank, source order), i.e. the sources interleaved round robin.
    """
    names = list(results)
    all_ids, all_scores, all_rank, all_src = [], [], [], []
    for s, name in enumerate(names):
        ids, scores = results[name]
        ids, scores = np.asarray(ids, np.int64), np.asarray(scores, np.float64)
        if quotas is not None and name in quotas:
            ids, scores = ids[: max(int(quotas[name]), 0)], scores[: max(int(quotas[name]), 0)]
        all_ids.append(ids)
        all_scores.append(scores)
        all_rank.append(np.arange(len(ids), dtype=np.int64))
        all_src.append(np.full(len(ids), s, dtype=np.int64))
    if not names or sum(len(i) for i in all_ids) == 0:
        return Candidates(np.zeros(0, np.int64), np.zeros(0), [], np.zeros(0, np.int64), [])
    ids, scores = np.concatenate(all_ids), np.concatenate(all_scores)
    rank, src = np.concatenate(all_rank), np.concatenate(all_src)
    order = np.lexsort((src, rank, ids))  # by item, then best rank, then source order
    ids, scores, rank, src = ids[order], scores[order], rank[order], src[order]
    uniq, first = np.unique(ids, return_index=True)
    groups = np.split(src, first[1:])
    kept = first[np.lexsort((src[first], rank[first]))]  # retrieval order of the kept rows
    pos_of = {int(u): g for u, g in zip(uniq, groups)}
    return Candidates(
        ids=ids[kept],
        scores=scores[kept],
        source=[names[int(s)] for s in src[kept]],
        source_rank=rank[kept],
        sources=[tuple(names[int(s)] for s in np.unique(pos_of[int(i)])) for i in ids[kept]],
    )
