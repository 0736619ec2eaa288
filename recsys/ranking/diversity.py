"""Filters and diversity rules of the re-ranking stage.

Filters drop candidates (``keep(user, ids, now) -> N bool``): already seen items, items by
authors the user blocked, items not yet created at request time.

:func:`diversify` builds the page greedily: at each position it takes the candidate with the
highest (topic-penalized) value that satisfies every active rule:

1. ``max_per_topic``: at most this many items of one topic per page;
2. ``no_consecutive_author``: two neighbouring items never share an author;
3. ``max_per_author``: at most this many items of one author per page.

Otherwise value order is preserved. With ``topic_penalty > 0`` a candidate's value is lowered by
``topic_penalty * (items of its topic already on the page)`` (a soft topic spread).

**Fallback** when no remaining candidate satisfies all rules (too few or too uniform
candidates): the rules are relaxed one at a time in the order listed above (topic cap first,
then the consecutive-author rule, then the author cap) for that position only, and the
relaxation is reported in :class:`DiversityReport`. If candidates run out the page is shorter
than asked and ``short_by`` says by how much.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from recsys.ranking.sources import InteractionLog

__all__ = [
    "AvailableFilter",
    "BlockedAuthorFilter",
    "CandidateFilter",
    "DiversityReport",
    "DiversityRules",
    "ItemCatalog",
    "SeenFilter",
    "diversify",
]

RELAX_ORDER = ("max_per_topic", "no_consecutive_author", "max_per_author")


@dataclass
class ItemCatalog:
    """Per-item metadata, indexed by item id: ``author`` (P), ``topic`` (P), ``created`` (P)."""

    author: np.ndarray
    topic: np.ndarray
    created: np.ndarray

    def __post_init__(self) -> None:
        self.author = np.asarray(self.author, np.int64)
        self.topic = np.asarray(self.topic, np.int64)
        self.created = np.asarray(self.created, np.int64)
        if not self.author.shape == self.topic.shape == self.created.shape:
            raise ValueError("ItemCatalog author, topic and created must have the same length")

    def __len__(self) -> int:
        return len(self.author)

    @classmethod
    def from_posts(cls, posts: pl.DataFrame) -> ItemCatalog:
        """From a synthetic ``posts`` table (``post_id author_id topic created_at``, Utf8 ids;
        topics ``tNNN``). Rows must cover post ids ``0..P-1``."""
        f = posts.select(
            pl.col("post_id").cast(pl.Int64),
            pl.col("author_id").cast(pl.Int64),
            pl.col("topic").str.strip_prefix("t").cast(pl.Int64),
            pl.col("created_at").cast(pl.Int64),
        ).sort("post_id")
        if f.height and f["post_id"][-1] != f.height - 1:
            raise ValueError("posts table must hold post ids 0..P-1 exactly once")
        return cls(f["author_id"].to_numpy(), f["topic"].to_numpy(), f["created_at"].to_numpy())


@runtime_checkable
class CandidateFilter(Protocol):
    """``keep(user, ids N, now) -> N bool`` (True = keep)."""

    name: str

    def keep(self, user: int, ids: np.ndarray, now: int) -> np.ndarray: ...


class SeenFilter:
    """Drops items the user was shown before ``now`` (from an :class:`InteractionLog`)."""

    name = "seen"

    def __init__(self, log: InteractionLog) -> None:
        self.log = log

    def keep(self, user: int, ids: np.ndarray, now: int) -> np.ndarray:
        return ~np.isin(ids, self.log.seen(user, now))


class BlockedAuthorFilter:
    """Drops items whose author the user blocked (``blocked``: user -> author ids)."""

    name = "blocked"

    def __init__(self, catalog: ItemCatalog, blocked: Mapping[int, set[int] | list[int]]) -> None:
        self.catalog = catalog
        self.blocked = {int(u): np.asarray(sorted(a), np.int64) for u, a in blocked.items()}

    def keep(self, user: int, ids: np.ndarray, now: int) -> np.ndarray:
        authors = self.blocked.get(int(user))
        if authors is None or len(authors) == 0:
            return np.ones(len(ids), dtype=bool)
        return ~np.isin(self.catalog.author[ids], authors)


class AvailableFilter:
    """Drops ids outside the catalog and items created after ``now``."""

    name = "available"

    def __init__(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog

    def keep(self, user: int, ids: np.ndarray, now: int) -> np.ndarray:
        ok = (ids >= 0) & (ids < len(self.catalog))
        ok[ok] = self.catalog.created[ids[ok]] <= now
        return ok


@dataclass(frozen=True)
class DiversityRules:
    """Page-level diversity rules (``None`` / ``False`` / ``0`` disables one).

    Attributes:
        no_consecutive_author: neighbours never share an author.
        max_per_author: cap of items per author per page.
        max_per_topic: cap of items per topic per page.
        topic_penalty: value lowered by this times the topic's count already on the page.
    """

    no_consecutive_author: bool = True
    max_per_author: int | None = 2
    max_per_topic: int | None = 3
    topic_penalty: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_per_author", "max_per_topic"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"DiversityRules.{name} must be >= 1 or None, got {v}")
        if self.topic_penalty < 0:
            raise ValueError(f"topic_penalty must be >= 0, got {self.topic_penalty}")

    @classmethod
    def none(cls) -> DiversityRules:
        """No rules: the page is the value order."""
        return cls(no_consecutive_author=False, max_per_author=None, max_per_topic=None)


@dataclass
class DiversityReport:
    """What the greedy re-rank had to give up.

    Attributes:
        relaxed: ``(page position, rules relaxed there)`` for each position that needed it.
        short_by: page slots left empty because candidates ran out.
    """

    relaxed: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    short_by: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "relaxed": [{"position": p, "rules": list(r)} for p, r in self.relaxed],
            "short_by": self.short_by,
        }


def diversify(
    values: np.ndarray,
    authors: np.ndarray,
    topics: np.ndarray,
    page_size: int,
    rules: DiversityRules,
) -> tuple[np.ndarray, DiversityReport]:
    """Greedy diverse selection.

    Args:
        values: ``N`` candidate values (higher is better).
        authors: ``N`` author ids.
        topics: ``N`` topic ids.
        page_size: slots to fill.
        rules: the rules; see the module docstring for the fallback order.

    Returns:
        ``(picked, report)``: ``picked`` holds ``min(page_size, N)`` candidate indices in page
        order.
    """
    values = np.asarray(values, np.float64)
    authors, topics = np.asarray(authors, np.int64), np.asarray(topics, np.int64)
    n = len(values)
    report = DiversityReport()
    if page_size < 0:
        raise ValueError(f"page_size must be >= 0, got {page_size}")
    slots = min(page_size, n)
    report.short_by = page_size - slots
    # Compact author / topic codes for counting.
    _, a_code = np.unique(authors, return_inverse=True)
    _, t_code = np.unique(topics, return_inverse=True)
    a_count = np.zeros(a_code.max() + 1 if n else 0, np.int64)
    t_count = np.zeros(t_code.max() + 1 if n else 0, np.int64)
    free = np.ones(n, dtype=bool)
    picked: list[int] = []
    # Candidate order: by value, ties by input position (stable).
    order = np.argsort(-values, kind="stable")
    v_sorted, a_sorted, t_sorted = values[order], a_code[order], t_code[order]
    for pos in range(slots):
        score = v_sorted - rules.topic_penalty * t_count[t_sorted]
        ok_free = free[order]
        checks = {
            "max_per_topic": (
                t_count[t_sorted] < rules.max_per_topic if rules.max_per_topic else None
            ),
            "no_consecutive_author": (
                a_sorted != a_code[picked[-1]] if rules.no_consecutive_author and picked else None
            ),
            "max_per_author": (
                a_count[a_sorted] < rules.max_per_author if rules.max_per_author else None
            ),
        }
        choice = -1
        for n_relaxed in range(len(RELAX_ORDER) + 1):
            mask = ok_free.copy()
            for name in RELAX_ORDER[n_relaxed:]:
                if checks[name] is not None:
                    mask &= checks[name]
            if mask.any():
                cand = np.flatnonzero(mask)
                choice = int(cand[np.argmax(score[cand])])  # first max = earliest in value order
                relaxed = tuple(r for r in RELAX_ORDER[:n_relaxed] if checks[r] is not None)
                if relaxed:
                    report.relaxed.append((pos, relaxed))
                break
        idx = int(order[choice])
        picked.append(idx)
        free[idx] = False
        a_count[a_code[idx]] += 1
        t_count[t_code[idx]] += 1
    return np.asarray(picked, dtype=np.int64), report
