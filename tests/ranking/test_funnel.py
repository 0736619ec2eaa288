"""Funnel mechanics on hand-built candidates: merge, value, filters, diversity, edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recsys.ranking import (
    AnnSource,
    AvailableFilter,
    BlockedAuthorFilter,
    BruteForceIndex,
    DiversityRules,
    Funnel,
    InteractionLog,
    ItemCatalog,
    ItemToItemSource,
    PopularRecentSource,
    SeenFilter,
    StageSizes,
    UnknownUserError,
    ValueFormula,
    diversify,
    explore,
    merge_candidates,
)
from recsys.ranking.diversity import DiversityReport

TASKS = ("like", "comment", "share", "save", "long_dwell")


class StaticSource:
    """Returns a fixed list (best first), capped at k."""

    def __init__(self, name: str, ids: list[int]) -> None:
        self.name, self.ids = name, np.asarray(ids, np.int64)

    def candidates(self, user: int, k: int, now: int) -> tuple[np.ndarray, np.ndarray]:
        ids = self.ids[:k]
        return ids, -np.arange(len(ids), dtype=float)


class TableRanker:
    """P(task) = like_table[item] for every task (so value is monotone in the table)."""

    tasks = TASKS

    def __init__(self, p: np.ndarray) -> None:
        self.p = p

    def score(self, user: int, item_ids: np.ndarray, now: int) -> dict[str, np.ndarray]:
        return {t: self.p[item_ids] for t in self.tasks}


def _catalog(n: int = 20, authors=None, topics=None) -> ItemCatalog:
    authors = np.arange(n) if authors is None else np.asarray(authors)
    topics = np.arange(n) if topics is None else np.asarray(topics)
    return ItemCatalog(author=authors, topic=topics, created=np.zeros(n, np.int64))


# ------------------------------------------------------------------------- merge / quotas
def test_merge_dedups_keeps_best_rank_and_records_sources() -> None:
    res = {
        "a": (np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7])),
        "b": (np.array([3, 4, 1]), np.array([10.0, 5.0, 1.0])),
    }
    c = merge_candidates(res)
    assert c.ids.tolist() == [1, 3, 2, 4]  # rank 0: a:1, b:3; rank 1: a:2, b:4
    assert c.source == ["a", "b", "a", "b"]
    assert c.sources[0] == ("a", "b") and c.sources[1] == ("a", "b") and c.sources[2] == ("a",)
    assert c.scores.tolist() == [0.9, 10.0, 0.8, 5.0]
    assert c.source_rank.tolist() == [0, 0, 1, 1]
    assert len(np.unique(c.ids)) == len(c.ids)


def test_merge_tie_prefers_first_source_and_applies_quotas() -> None:
    res = {"a": (np.array([5, 6, 7]), np.zeros(3)), "b": (np.array([5, 8, 9]), np.ones(3))}
    c = merge_candidates(res, quotas={"a": 1, "b": 2})
    assert c.ids.tolist() == [5, 8]
    assert c.source == ["a", "b"] and c.sources[0] == ("a", "b")
    assert len(merge_candidates({})) == 0


def test_funnel_quotas_limit_each_source() -> None:
    cat = _catalog(20)
    srcs = [StaticSource("a", list(range(10))), StaticSource("b", list(range(10, 20)))]
    f = Funnel(
        srcs,
        TableRanker(np.linspace(0, 1, 20)),
        ValueFormula(),
        cat,
        diversity=DiversityRules.none(),
        sizes=StageSizes(10, 10, 5),
        quotas={"a": 3, "b": 2},
    )
    page = f.recommend(0, 0)
    assert page.counts["source:a"] == 3 and page.counts["source:b"] == 2
    assert page.counts["retrieved"] == 5
    assert set(page.item_ids.tolist()) == {0, 1, 2, 10, 11}
    with pytest.raises(ValueError, match="unknown sources"):
        Funnel(srcs, TableRanker(np.zeros(20)), ValueFormula(), cat, quotas={"zzz": 1})


# ------------------------------------------------------------------------------ value
def test_value_formula_math_and_missing_task() -> None:
    f = ValueFormula(weights={"like": 1.0, "comment": 2.0, "save": 0.0}, penalties={"neg": 3.0})
    probs = {
        "like": np.array([0.5, 0.1]),
        "comment": np.array([0.2, 0.0]),
        "neg": np.array([0.1, 0.3]),
    }
    np.testing.assert_allclose(f(probs), [0.5 + 0.4 - 0.3, 0.1 - 0.9])
    with pytest.raises(KeyError, match="'neg'"):
        f({"like": np.ones(2), "comment": np.ones(2)})
    # Weight 0 makes a task optional ("save" absent above is fine).
    ok = ValueFormula(weights={"like": 1.0}, penalties={"negative": 0.0})
    np.testing.assert_allclose(ok({"like": np.array([0.25])}), [0.25])
    with pytest.raises(ValueError, match=">= 0"):
        ValueFormula(penalties={"negative": -1.0})
    with pytest.raises(KeyError, match="negative"):
        Funnel(
            [StaticSource("a", [0])],
            TableRanker(np.zeros(1)),
            ValueFormula(penalties={"negative": 1.0}),
            _catalog(1),
        )


# -------------------------------------------------------------------------- diversity
def test_no_consecutive_author() -> None:
    values = np.array([5.0, 4.0, 3.0, 2.0])
    authors = np.array([1, 1, 2, 2])
    rules = DiversityRules(no_consecutive_author=True, max_per_author=None, max_per_topic=None)
    picked, rep = diversify(values, authors, np.arange(4), 4, rules)
    assert picked.tolist() == [0, 2, 1, 3]
    assert rep.relaxed == [] and rep.short_by == 0
    # Without rules: plain value order.
    picked, _ = diversify(values, authors, np.arange(4), 4, DiversityRules.none())
    assert picked.tolist() == [0, 1, 2, 3]


def test_cap_per_author() -> None:
    values = np.array([9.0, 8.0, 7.0, 6.0, 5.0])
    authors = np.array([1, 2, 1, 1, 3])
    rules = DiversityRules(no_consecutive_author=False, max_per_author=2, max_per_topic=None)
    picked, rep = diversify(values, authors, np.arange(5), 4, rules)
    assert picked.tolist() == [0, 1, 2, 4]  # the third item of author 1 (index 3) is skipped
    assert not rep.relaxed


def test_topic_cap_and_topic_penalty() -> None:
    values = np.array([10.0, 9.0, 8.0, 7.0, 1.0])
    topics = np.array([0, 0, 0, 0, 1])
    cap = DiversityRules(no_consecutive_author=False, max_per_author=None, max_per_topic=2)
    picked, rep = diversify(values, np.arange(5), topics, 3, cap)
    assert picked.tolist() == [0, 1, 4]
    assert not rep.relaxed
    soft = DiversityRules(
        no_consecutive_author=False, max_per_author=None, max_per_topic=None, topic_penalty=5.0
    )
    picked, _ = diversify(values, np.arange(5), topics, 3, soft)
    # after 0: item1 scores 9-5=4 > item4 1 -> 1; then item2: 8-10=-2 < 1 -> item 4.
    assert picked.tolist() == [0, 1, 4]
    small = DiversityRules(
        no_consecutive_author=False, max_per_author=None, max_per_topic=None, topic_penalty=0.5
    )
    picked, _ = diversify(values, np.arange(5), topics, 3, small)
    assert picked.tolist() == [0, 1, 2]  # a small penalty keeps value order


def test_fallback_relaxes_in_stated_order_and_reports() -> None:
    # One author, one topic: every rule fails after the first slot.
    values = np.array([3.0, 2.0, 1.0])
    rules = DiversityRules(no_consecutive_author=True, max_per_author=1, max_per_topic=1)
    picked, rep = diversify(values, np.zeros(3), np.zeros(3), 5, rules)
    assert picked.tolist() == [0, 1, 2]  # value order kept among the relaxed
    all_rules = ("max_per_topic", "no_consecutive_author", "max_per_author")
    assert rep.relaxed == [(1, all_rules), (2, all_rules)]
    assert rep.short_by == 2
    # Only the topic cap must be relaxed when authors differ.
    picked, rep = diversify(values, np.arange(3), np.zeros(3), 3, rules)
    assert picked.tolist() == [0, 1, 2]
    assert rep.relaxed == [(1, ("max_per_topic",)), (2, ("max_per_topic",))]
    assert isinstance(rep.to_dict()["relaxed"], list)
    assert DiversityReport().to_dict() == {"relaxed": [], "short_by": 0}


# ---------------------------------------------------------------------------- filters
def test_seen_blocked_and_available_filters() -> None:
    cat = ItemCatalog(author=[7, 7, 8, 9, 9], topic=[0, 1, 2, 3, 4], created=[0, 0, 0, 0, 100])
    log = InteractionLog(users=[0, 0, 1], items=[1, 2, 3], times=[5, 50, 5], weights=[1, 0, 1])
    ids = np.arange(5)
    assert SeenFilter(log).keep(0, ids, 10).tolist() == [True, False, True, True, True]
    assert SeenFilter(log).keep(0, ids, 60).tolist() == [True, False, False, True, True]
    blocked = BlockedAuthorFilter(cat, {0: {7}})
    assert blocked.keep(0, ids, 10).tolist() == [False, False, True, True, True]
    assert blocked.keep(1, ids, 10).all()
    assert AvailableFilter(cat).keep(0, np.array([0, 4, 99]), 10).tolist() == [True, False, False]
    f = Funnel(
        [StaticSource("s", [0, 1, 2, 3, 4])],
        TableRanker(np.ones(5)),
        ValueFormula(),
        cat,
        filters=[SeenFilter(log), BlockedAuthorFilter(cat, {0: {9}}), AvailableFilter(cat)],
        diversity=DiversityRules.none(),
        sizes=StageSizes(5, 5, 5),
    )
    page = f.recommend(0, 60)
    assert page.item_ids.tolist() == [0]
    assert page.counts["filtered:seen"] == 2 and page.counts["filtered:blocked"] == 2
    assert page.diversity.short_by == 4 and page.notes


# ------------------------------------------------------------------------- sources
def _vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(30, 4)).astype(np.float32)
    users = rng.normal(size=(3, 4)).astype(np.float32)
    return items, users


def test_sources_basic_and_k_capped() -> None:
    items, users = _vectors()
    index = BruteForceIndex(items)
    ann = AnnSource(index, users)
    ids, scores = ann.candidates(1, 5, 0)
    np.testing.assert_array_equal(ids, np.argsort(-(items @ users[1]))[:5])
    assert np.all(np.diff(scores) <= 0)
    ids, _ = ann.candidates(1, 1000, 0)  # k > corpus: capped
    assert len(ids) == 30
    with pytest.raises(UnknownUserError, match="user 7"):
        ann.candidates(7, 5, 0)
    log = InteractionLog(
        users=[0, 0, 0, 1, 1],
        items=[3, 4, 3, 3, 5],
        times=[10, 20, 30, 40, 400],
        weights=[1, 0, 1, 2, 1],
    )
    pop = PopularRecentSource(log, window_s=100)
    ids, scores = pop.candidates(2, 10, 100)
    assert ids.tolist() == [3] and scores.tolist() == [4.0]
    ids, _ = pop.candidates(2, 10, 500)
    assert ids.tolist() == [5]
    i2i = ItemToItemSource(index, items, log, n_recent=2)
    ids, _ = i2i.candidates(0, 4, 100)
    assert len(ids) == 4 and 3 not in ids.tolist() and len(set(ids.tolist())) == 4
    ids, _ = i2i.candidates(2, 4, 100)  # no history -> nothing
    assert len(ids) == 0


def test_empty_history_page_still_fills_and_latencies() -> None:
    items, users = _vectors()
    index = BruteForceIndex(items)
    log = InteractionLog(users=[0], items=[0], times=[0], weights=[1])
    cat = _catalog(30, authors=np.arange(30) % 10, topics=np.arange(30) % 5)
    f = Funnel(
        [AnnSource(index, users), ItemToItemSource(index, items, log)],
        TableRanker(np.linspace(0, 1, 30)),
        ValueFormula(),
        cat,
        sizes=StageSizes(30, 20, 8),
    )
    page = explore(2, f, 100)
    assert page.counts["source:item2item"] == 0
    assert len(page.items) == 8
    for key in ("retrieve", "rank", "rerank", "total"):
        assert page.latency_ms[key] >= 0
    assert page.latency_ms["total"] >= page.latency_ms["rank"]
    d = page.to_dict()
    assert d["items"][0]["positions"]["page"] == 0 and set(d["items"][0]["probs"]) == set(TASKS)
    assert all(it.sources == ("ann",) for it in page.items)
    authors = [it.author for it in page.items]
    assert all(a != b for a, b in itertools.pairwise(authors))


def test_unknown_user_error_or_cold_start() -> None:
    items, users = _vectors()
    index = BruteForceIndex(items)
    log = InteractionLog(users=[0, 1], items=[4, 5], times=[0, 1], weights=[1, 1])
    cat = _catalog(30)
    sources = [AnnSource(index, users), PopularRecentSource(log, window_s=10)]
    kw = dict(sizes=StageSizes(10, 10, 5), diversity=DiversityRules.none())
    f = Funnel(sources, TableRanker(np.linspace(0, 1, 30)), ValueFormula(), cat, **kw)
    with pytest.raises(UnknownUserError, match="user 99"):
        f.recommend(99, 5)
    cold = Funnel(
        sources, TableRanker(np.linspace(0, 1, 30)), ValueFormula(), cat, cold_start=True, **kw
    )
    page = cold.recommend(99, 5)
    assert page.item_ids.tolist() == [5, 4] and "cold start" in page.notes[0]
    assert page.diversity.short_by == 3


def test_bad_stage_sizes_and_sources() -> None:
    with pytest.raises(ValueError, match="retrieve >= rank >= page"):
        StageSizes(retrieve=10, rank=20, page=5)
    with pytest.raises(ValueError, match="at least one"):
        Funnel([], TableRanker(np.zeros(1)), ValueFormula(), _catalog(1))
    with pytest.raises(ValueError, match="distinct"):
        Funnel(
            [StaticSource("a", [0]), StaticSource("a", [0])],
            TableRanker(np.zeros(1)),
            ValueFormula(),
            _catalog(1),
        )
