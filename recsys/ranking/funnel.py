"""The multi-stage recommendation funnel: retrieve -> rank -> re-rank.

1. **retrieve** (thousands): every source is asked for its quota; results are merged with
   deduplication (:func:`~recsys.ranking.sources.merge_candidates`), filtered (seen, blocked
   authors, not yet created, ...) and cut to ``sizes.retrieve`` in retrieval order.
2. **rank** (hundreds): the first ``sizes.rank`` candidates in retrieval order are scored by
   the :class:`~recsys.ranking.ranker.Ranker`; the :class:`~recsys.ranking.value.ValueFormula`
   turns the task probabilities into one value; candidates are sorted by value.
3. **re-rank** (tens): :func:`~recsys.ranking.diversity.diversify` picks ``sizes.page`` items
   under the diversity rules (with the documented fallback).

Edge cases: a source asked for more items than it has returns what it has (``k`` larger than
the corpus is capped, the page may then be shorter: ``Page.diversity.short_by``); a user without
engagement history gets nothing from item-to-item, the other sources fill the page; an unknown
user raises :class:`~recsys.ranking.sources.UnknownUserError` from the sources that need a
user (no silent cold start: pass ``cold_start=True`` to fall back to the sources that do not
know users, e.g. popular-recent, and the ranker must then accept the user).

Every :class:`Page` carries per-item score breakdowns and per-stage latencies (ms, from
``time.perf_counter``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.ranking.diversity import (
    CandidateFilter,
    DiversityReport,
    DiversityRules,
    ItemCatalog,
    diversify,
)
from recsys.ranking.ranker import Ranker
from recsys.ranking.sources import (
    Candidates,
    CandidateSource,
    UnknownUserError,
    merge_candidates,
)
from recsys.ranking.value import ValueFormula

__all__ = ["Funnel", "FunnelTrace", "Page", "PageItem", "StageSizes", "explore"]


@dataclass(frozen=True)
class StageSizes:
    """Items kept after each stage: ``retrieve`` >= ``rank`` >= ``page`` >= 1."""

    retrieve: int = 2000
    rank: int = 300
    page: int = 20

    def __post_init__(self) -> None:
        if not self.retrieve >= self.rank >= self.page >= 1:
            raise ValueError(f"stage sizes must satisfy retrieve >= rank >= page >= 1, got {self}")


@dataclass
class PageItem:
    """One recommended item and why it is there."""

    item_id: int
    author: int
    topic: int
    value: float
    probs: dict[str, float]
    source: str
    sources: tuple[str, ...]
    retrieval_score: float
    retrieval_position: int
    rank_position: int
    page_position: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "author": self.author,
            "topic": self.topic,
            "value": round(self.value, 6),
            "probs": {t: round(p, 6) for t, p in self.probs.items()},
            "source": self.source,
            "sources": list(self.sources),
            "retrieval_score": round(self.retrieval_score, 6),
            "positions": {
                "retrieval": self.retrieval_position,
                "rank": self.rank_position,
                "page": self.page_position,
            },
        }


@dataclass
class Page:
    """The final page for ``user`` at ``now``.

    Attributes:
        items: page order.
        latency_ms: ``retrieve``, ``rank``, ``rerank``, ``total`` (perf_counter, ms).
        counts: candidates after each stage (``retrieved``, ``filtered``, ``ranked``, ``page``)
            and per source (``source:<name>``).
        diversity: relaxations and shortfall of the re-rank.
        notes: human-readable remarks (e.g. a cold-start fallback).
    """

    user: int
    now: int
    items: list[PageItem]
    latency_ms: dict[str, float]
    counts: dict[str, int]
    diversity: DiversityReport
    notes: list[str] = field(default_factory=list)

    @property
    def item_ids(self) -> np.ndarray:
        return np.asarray([it.item_id for it in self.items], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view for printing."""
        return {
            "user": self.user,
            "now": self.now,
            "items": [it.to_dict() for it in self.items],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "counts": dict(self.counts),
            "diversity": self.diversity.to_dict(),
            "notes": list(self.notes),
        }


@dataclass
class FunnelTrace:
    """Everything one request produced (for offline evaluation).

    Attributes:
        candidates: filtered candidates in retrieval order (cut to ``sizes.retrieve``).
        ranked_idx: indices into ``candidates`` of the ranked items, by value (best first).
        probs: task -> probabilities of ``candidates[:n_ranked]`` (retrieval order).
        values: values of ``candidates[:n_ranked]``.
        page_idx: indices into ``candidates`` of the page, in page order.
    """

    candidates: Candidates
    ranked_idx: np.ndarray
    probs: dict[str, np.ndarray]
    values: np.ndarray
    page_idx: np.ndarray
    page: Page


class Funnel:
    """Retrieve -> rank -> re-rank.

    Args:
        sources: candidate sources (distinct names); their order breaks dedup ties.
        ranker: scores candidates per task.
        value: the value formula (checked against ``ranker.tasks`` up front).
        catalog: item authors / topics / creation times.
        filters: applied after the merge, in order.
        diversity: page rules.
        sizes: stage sizes.
        quotas: source name -> items asked from it (default: ``sizes.retrieve`` split evenly).
        cold_start: on :class:`UnknownUserError` from a source, skip that source (note it on the
            page) instead of raising.
    """

    def __init__(
        self,
        sources: Sequence[CandidateSource],
        ranker: Ranker,
        value: ValueFormula,
        catalog: ItemCatalog,
        filters: Sequence[CandidateFilter] = (),
        diversity: DiversityRules | None = None,
        sizes: StageSizes | None = None,
        quotas: Mapping[str, int] | None = None,
        cold_start: bool = False,
    ) -> None:
        names = [s.name for s in sources]
        if not names:
            raise ValueError("Funnel needs at least one candidate source")
        if len(set(names)) != len(names):
            raise ValueError(f"candidate source names must be distinct, got {names}")
        value.check_tasks(ranker.tasks)
        self.sources, self.ranker, self.value = list(sources), ranker, value
        self.catalog, self.filters = catalog, list(filters)
        self.diversity = diversity if diversity is not None else DiversityRules()
        self.sizes = sizes if sizes is not None else StageSizes()
        if quotas is None:
            share = -(-self.sizes.retrieve // len(names))
            quotas = {n: share for n in names}
        unknown = sorted(set(quotas) - set(names))
        if unknown:
            raise ValueError(f"quotas name unknown sources {unknown}; sources are {names}")
        bad = {n: q for n, q in quotas.items() if q < 0}
        if bad:
            raise ValueError(f"quotas must be >= 0, got {bad}")
        self.quotas = {n: int(quotas.get(n, 0)) for n in names}
        self.cold_start = cold_start

    def recommend(self, user: int, now: int) -> Page:
        """The page for ``user`` at unix time ``now``."""
        return self.trace(user, now).page

    def trace(self, user: int, now: int) -> FunnelTrace:
        """Runs the funnel and keeps the intermediate stages (see :class:`FunnelTrace`)."""
        user, now = int(user), int(now)
        t0 = time.perf_counter()
        notes: list[str] = []
        counts: dict[str, int] = {}
        results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for src in self.sources:
            try:
                ids, scores = src.candidates(user, self.quotas[src.name], now)
            except UnknownUserError as e:
                if not self.cold_start:
                    raise
                notes.append(f"cold start: source {src.name!r} skipped ({e})")
                ids, scores = np.zeros(0, np.int64), np.zeros(0)
            results[src.name] = (ids, scores)
            counts[f"source:{src.name}"] = len(ids)
        cands = merge_candidates(results, self.quotas)
        counts["retrieved"] = len(cands)
        keep = np.ones(len(cands), dtype=bool)
        for flt in self.filters:
            if keep.any():
                k = np.asarray(flt.keep(user, cands.ids, now), dtype=bool)
                counts[f"filtered:{flt.name}"] = int((keep & ~k).sum())
                keep &= k
        cands = cands.take(keep)
        cands = cands.take(np.arange(min(len(cands), self.sizes.retrieve)))
        counts["filtered"] = len(cands)
        t1 = time.perf_counter()

        n_rank = min(len(cands), self.sizes.rank)
        to_rank = cands.ids[:n_rank]
        if n_rank:
            probs = {
                t: np.asarray(p, np.float64)
                for t, p in self.ranker.score(user, to_rank, now).items()
            }
        else:
            probs = {t: np.zeros(0) for t in self.ranker.tasks}
        values = self.value(probs) if n_rank else np.zeros(0)
        ranked_idx = np.argsort(-values, kind="stable")
        counts["ranked"] = n_rank
        t2 = time.perf_counter()

        authors = self.catalog.author[to_rank]
        topics = self.catalog.topic[to_rank]
        picked, report = diversify(values, authors, topics, self.sizes.page, self.diversity)
        rank_pos = np.empty(n_rank, np.int64)
        rank_pos[ranked_idx] = np.arange(n_rank)
        t3 = time.perf_counter()

        items = [
            PageItem(
                item_id=int(cands.ids[i]),
                author=int(authors[i]),
                topic=int(topics[i]),
                value=float(values[i]),
                probs={t: float(p[i]) for t, p in probs.items()},
                source=cands.source[i],
                sources=cands.sources[i],
                retrieval_score=float(cands.scores[i]),
                retrieval_position=int(i),
                rank_position=int(rank_pos[i]),
                page_position=pos,
            )
            for pos, i in enumerate(picked)
        ]
        counts["page"] = len(items)
        if report.short_by:
            notes.append(f"page short by {report.short_by}: only {n_rank} candidates ranked")
        latency = {
            "retrieve": (t1 - t0) * 1e3,
            "rank": (t2 - t1) * 1e3,
            "rerank": (t3 - t2) * 1e3,
        }
        latency["total"] = (time.perf_counter() - t0) * 1e3
        page = Page(user, now, items, latency, counts, report, notes)
        return FunnelTrace(cands, ranked_idx, probs, values, picked, page)


def explore(user: int, funnel: Funnel, now: int) -> Page:
    """Library entry point of the Explore surface: ``funnel.recommend(user, now)``."""
    return funnel.recommend(user, now)
