"""Full-corpus ranking metrics and top-k selection, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.metrics.ranking import (
    RankingAccumulator,
    per_user_ranking_metrics,
    ranking_metrics,
    topk_from_scores,
)

L2, L3, L4, L5 = (math.log2(x) for x in (2, 3, 4, 5))


# -- topk_from_scores -----------------------------------------------------------------------


def test_topk_orders_by_score_and_breaks_ties_by_lower_index() -> None:
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.9, 0.3],
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [0.0, 0.2, 0.2, 0.2, 0.7],
        ]
    )
    top = topk_from_scores(scores, 3)
    assert top.dtype == np.int64
    np.testing.assert_array_equal(top, [[1, 3, 2], [0, 1, 2], [4, 1, 2]])
    np.testing.assert_array_equal(topk_from_scores(scores, 1), [[1], [0], [4]])


def test_topk_tie_at_the_cut_keeps_lowest_ids_whatever_the_partition_does() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 40)).astype(np.float32)  # many ties
    top = topk_from_scores(scores, 7, chunk_size=8)
    # Reference: full stable sort on (-score, id).
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(top, ref)


def test_topk_exclusion_csr_and_lists_agree_and_never_return_excluded() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    lists = [np.array([0, 2]), np.array([3])]
    csr = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [0, 2, 3])), shape=(2, 4))
    expected = [[1, 3, -1], [2, 1, 0]]
    np.testing.assert_array_equal(topk_from_scores(scores, 3, exclude=lists), expected)
    np.testing.assert_array_equal(topk_from_scores(scores, 3, exclude=csr), expected)
    np.testing.assert_array_equal(scores, [[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])


def test_topk_pads_when_k_exceeds_items_and_maps_minus_inf_to_padding() -> None:
    scores = np.array([[0.5, -np.inf, 0.7]])
    np.testing.assert_array_equal(topk_from_scores(scores, 5), [[2, 0, -1, -1, -1]])


def test_topk_chunking_does_not_change_the_result() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(37, 23))
    exclude = sp.random(37, 23, density=0.2, random_state=2, format="csr")
    full = topk_from_scores(scores, 10, exclude=exclude)
    for chunk in (1, 5, 36, 100):
        np.testing.assert_array_equal(topk_from_scores(scores, 10, exclude, chunk), full)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": np.zeros(3), "k": 1}, "U x I"),
        ({"scores": np.zeros((2, 3)), "k": 0}, "positive integer"),
        ({"scores": np.array([[0.0, np.nan]]), "k": 1}, "NaN .*row 0, item 1"),
        ({"scores": np.zeros((2, 3)), "k": 1, "exclude": [np.array([0])]}, "one id array"),
        ({"scores": np.zeros((1, 3)), "k": 1, "exclude": [np.array([3])]}, "outside 0 .. 2"),
        ({"scores": np.zeros((1, 3)), "k": 1, "exclude": [np.array([0.5])]}, "dtype float64"),
        ({"scores": np.zeros((2, 3)), "k": 1, "exclude": sp.csr_matrix((2, 4))}, "2 x 3"),
    ],
)
def test_topk_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        topk_from_scores(**kwargs)


# -- ranking_metrics ----------------------------------------------------------------------

# Three users, Kmax = 4. Relevant: u0 {2, 7}, u1 {9}, u2 {1, 3, 5}.
TOPK = np.array(
    [
        [2, 5, 7, 1],  # hits at ranks 1 and 3
        [4, 3, 8, 6],  # no hit
        [0, 5, 6, 3],  # hits at ranks 2 and 4
    ]
)
RELEVANT = [np.array([2, 7]), np.array([9]), np.array([1, 3, 5])]


def test_every_metric_by_hand_at_several_k() -> None:
    m = ranking_metrics(TOPK, RELEVANT, ks=(1, 2, 4))
    assert m["users"] == 3
    # recall@K = hits / |relevant|
    assert m["recall@1"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert m["recall@2"] == pytest.approx((1 / 2 + 0 + 1 / 3) / 3)
    assert m["recall@4"] == pytest.approx((2 / 2 + 0 + 2 / 3) / 3)
    # hitrate@K
    assert m["hitrate@1"] == pytest.approx(1 / 3)
    assert m["hitrate@2"] == pytest.approx(2 / 3)
    assert m["hitrate@4"] == pytest.approx(2 / 3)
    # ndcg@K: DCG over hits / IDCG over min(|rel|, K) ranks
    u0_1, u2_1 = 1.0, 0.0
    u0_2, u2_2 = (1 / L2) / (1 / L2 + 1 / L3), (1 / L3) / (1 / L2 + 1 / L3)
    u0_4 = (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3)
    u2_4 = (1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4)
    assert m["ndcg@1"] == pytest.approx((u0_1 + u2_1) / 3)
    assert m["ndcg@2"] == pytest.approx((u0_2 + u2_2) / 3)
    assert m["ndcg@4"] == pytest.approx((u0_4 + u2_4) / 3)
    # mrr over all Kmax = 4 columns
    assert m["mrr"] == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert list(m) == [
        "recall@1", "recall@2", "recall@4", "ndcg@1", "ndcg@2", "ndcg@4",
        "hitrate@1", "hitrate@2", "hitrate@4", "mrr", "users",
    ]  # fmt: skip


def test_perfect_ranking_scores_one_and_recall_is_capped_by_k() -> None:
    topk = np.array([[3, 1, 2, 0]])
    m = ranking_metrics(topk, [np.array([1, 2, 3])], ks=(2, 3))
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2 / 3)  # |hits| / |relevant|, not / min(|rel|, K)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["mrr"] == 1.0


def test_padding_is_never_a_hit_and_users_without_relevant_items_are_skipped() -> None:
    topk = np.array([[-1, 4, -1], [1, -1, -1], [0, 1, 2]])
    relevant = [np.array([4]), np.array([], dtype=np.int64), np.array([5])]
    m = ranking_metrics(topk, relevant, ks=(1, 3))
    assert m["users"] == 2  # user 1 has no relevant item
    assert m["hitrate@1"] == 0.0
    assert m["hitrate@3"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg@3"] == pytest.approx((1 / L3) / 2)


def test_csr_relevant_equals_lists_and_duplicates_count_once() -> None:
    rows, cols = [0, 0, 1, 2, 2, 2], [2, 7, 9, 1, 3, 5]
    csr = sp.csr_matrix((np.ones(6), (rows, cols)), shape=(3, 10))
    assert ranking_metrics(TOPK, csr, ks=(1, 2, 4)) == ranking_metrics(TOPK, RELEVANT, (1, 2, 4))
    doubled = [np.array([2, 7, 2]), np.array([9, 9]), np.array([1, 3, 5, 5])]
    assert ranking_metrics(TOPK, doubled, (1, 4)) == ranking_metrics(TOPK, RELEVANT, (1, 4))


def test_no_user_with_relevant_items_gives_nan() -> None:
    m = ranking_metrics(np.array([[1, 2]]), [np.array([], dtype=np.int64)], ks=(1,))
    assert m["users"] == 0 and math.isnan(m["recall@1"]) and math.isnan(m["mrr"])


def test_per_user_values_and_user_rows() -> None:
    per = per_user_ranking_metrics(TOPK, RELEVANT, ks=(2,))
    np.testing.assert_array_equal(per["user"], [0, 1, 2])
    np.testing.assert_allclose(per["hitrate@2"], [1.0, 0.0, 1.0])
    np.testing.assert_allclose(per["mrr"], [1.0, 0.0, 0.5])


def test_topk_then_metrics_on_scores() -> None:
    scores = np.array([[0.9, 0.1, 0.8, 0.3], [0.2, 0.2, 0.2, 0.9]])
    train = [np.array([0]), np.array([3])]
    top = topk_from_scores(scores, 2, exclude=train)
    np.testing.assert_array_equal(top, [[2, 3], [0, 1]])
    m = ranking_metrics(top, [np.array([3]), np.array([1])], ks=(1, 2))
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0 and m["mrr"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("topk", "relevant", "ks", "match"),
    [
        (np.array([1, 2]), [np.array([1])], (1,), "U x Kmax"),
        (np.array([[1, 2]]), [np.array([1])], (3,), "K = 3 exceeds .* Kmax = 2"),
        (np.array([[1, -2]]), [np.array([1])], (1,), "-2 at row 0, column 1"),
        (np.array([[1.0, 2.0]]), [np.array([1])], (1,), "integer item ids"),
        (np.array([[1, 2, 1]]), [np.array([1])], (1,), "row 0 lists item 1 more than once"),
        (np.array([[1, 2]]), [np.array([1]), np.array([2])], (1,), "one id array per topk row"),
        (np.array([[1, 2]]), sp.csr_matrix((2, 5)), (1,), "one row per topk row"),
        (np.array([[1, 2]]), [np.array([-1])], (1,), "negative item id"),
        (np.array([[1, 2]]), [np.array([1.5])], (1,), r"relevant\[0\] .* got dtype float64"),
        (np.array([[1, 2]]), [np.array([1])], (), "at least one"),
        (np.array([[1, 2]]), [np.array([1])], (0,), "positive integer"),
        (np.array([[1, 2]]), [np.array([1])], (1, 1), "distinct"),
    ],
)
def test_ranking_metrics_errors(topk, relevant, ks, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ranking_metrics(topk, relevant, ks=ks)


# -- RankingAccumulator -------------------------------------------------------------------


def test_streaming_equals_batch_exactly() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(60, 30))
    topk = topk_from_scores(scores, 12)
    relevant = [rng.choice(30, size=rng.integers(0, 5), replace=False) for _ in range(60)]
    ks = (1, 5, 12)
    batch = ranking_metrics(topk, relevant, ks)
    acc = RankingAccumulator(ks)
    for start in range(0, 60, 17):
        acc.update(topk[start : start + 17], relevant[start : start + 17])
    assert acc.compute() == batch
    assert acc.users == batch["users"]


def test_accumulator_errors_and_reset() -> None:
    acc = RankingAccumulator((1, 2))
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()
    acc.update(np.array([[1, 2]]), [np.array([2])])
    with pytest.raises(ValueError, match="Kmax = 2"):
        acc.update(np.array([[1, 2, 3]]), [np.array([2])])
    with pytest.raises(ValueError, match=r"Kmax = 2 .*got 1"):
        acc.update(np.array([[1]]), [np.array([1])])
    assert acc.compute()["mrr"] == pytest.approx(0.5)
    acc.reset()
    acc.update(np.array([[1, 2, 3]]), [np.array([1])])
    assert acc.compute() == {
        "recall@1": 1.0, "recall@2": 1.0, "ndcg@1": 1.0, "ndcg@2": 1.0,
        "hitrate@1": 1.0, "hitrate@2": 1.0, "mrr": 1.0, "users": 1,
    }  # fmt: skip
