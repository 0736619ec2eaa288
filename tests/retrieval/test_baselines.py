"""Most-popular and implicit ALS / BPR baselines, and a full-corpus evaluation on ML-100K."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.data.interactions import InteractionMatrix, per_user_chronological_split
from recsys.data.readers.movielens import MovieLensReader
from recsys.metrics.ranking import ranking_metrics, topk_from_scores
from recsys.retrieval.baselines import ImplicitMF, MostPopular


def _random_train(n_users: int = 40, n_items: int = 25, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[:, 0] = 1.0  # a very popular item
    return sp.csr_matrix(dense)


def test_most_popular_counts_and_recommends_with_ties_and_exclusions() -> None:
    train = sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0, 0],
                [1, 0, 1, 0, 0],
                [0, 1, 1, 0, 1],
                [0, 0, 0, 0, 0],
            ],
            dtype=np.float32,
        )
    )
    model = MostPopular().fit(train)
    np.testing.assert_array_equal(model.popularity, [2, 2, 2, 0, 1])
    top = model.recommend(np.array([3, 0, 2]), 3)
    np.testing.assert_array_equal(top, [[0, 1, 2], [0, 1, 2], [0, 1, 2]])  # ties: lower id
    top = model.recommend(np.array([3, 0, 2]), 4, exclude=train)
    np.testing.assert_array_equal(top, [[0, 1, 2, 4], [2, 4, 3, -1], [0, 3, -1, -1]])
    assert model.score([1]).shape == (1, 5)


@pytest.mark.parametrize("make", [MostPopular, lambda: ImplicitMF("als", factors=8, seed=1)])
def test_recommend_equals_topk_of_the_scores(make) -> None:
    train = _random_train()
    model = make().fit(train)
    users = np.array([5, 0, 39, 5, 12])
    exclude = train[users]
    expected = topk_from_scores(model.score(users), 10, exclude=exclude)
    np.testing.assert_array_equal(model.recommend(users, 10, exclude=train), expected)
    np.testing.assert_array_equal(model.recommend(users, 10, train, chunk_size=2), expected)
    top = model.recommend(users, 30, exclude=train)  # more than the unseen items: -1 padding
    assert top.shape == (5, 30)
    for row, u in zip(top, users):
        seen = set(train[u].indices)
        assert not seen & set(row[row >= 0])
        assert (row >= 0).sum() == 25 - len(seen)


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_implicit_mf_is_deterministic_by_seed(kind: str) -> None:
    train = _random_train()
    a = ImplicitMF(kind, factors=8, iterations=5, seed=3).fit(train)
    b = ImplicitMF(kind, factors=8, iterations=5, seed=3).fit(train)
    c = ImplicitMF(kind, factors=8, iterations=5, seed=4).fit(train)
    assert a.user_factors is not None and a.item_factors is not None
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)
    assert a.score(np.arange(40)).shape == (40, 25)
    users = np.arange(40)
    np.testing.assert_array_equal(a.recommend(users, 5), b.recommend(users, 5))


def test_missing_implicit_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("implicit", "implicit.als", "implicit.bpr"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import implicit...` fail
    model = ImplicitMF()  # constructing never imports it
    with pytest.raises(ImportError, match="optional package 'implicit'"):
        model.fit(_random_train())


def test_baseline_errors() -> None:
    train = _random_train()
    with pytest.raises(RuntimeError, match="not fitted"):
        MostPopular().recommend([0], 3)
    with pytest.raises(ValueError, match="kind must be 'als' or 'bpr'"):
        ImplicitMF("svd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factors"):
        ImplicitMF(factors=0)
    with pytest.raises(TypeError, match="scipy sparse"):
        MostPopular().fit(train.toarray())
    model = MostPopular().fit(train)
    with pytest.raises(IndexError, match=r"user index 40 is outside 0 \.\. 39"):
        model.recommend([0, 40], 3)
    with pytest.raises(ValueError, match="positive integer"):
        model.recommend([0], 0)
    with pytest.raises(ValueError, match="40 x 25"):
        model.recommend([0], 3, exclude=train[:3])
    with pytest.raises(ValueError, match="1-D"):
        model.recommend([[0]], 3)


def test_ml100k_full_corpus_evaluation(ml100k: Path) -> None:
    """Most-popular vs ALS (and BPR) on the per-user split: test items ranked against every
    item, train + valid items excluded."""
    frame = pl.concat(list(MovieLensReader(ml100k).iter_chunks()))
    splits = per_user_chronological_split(frame, "user_id", "item_id", "timestamp")
    matrix = InteractionMatrix.from_frame(frame)
    train, valid, test = (matrix.csr(splits[s]) for s in ("train", "valid", "test"))
    users = np.arange(matrix.shape[0])
    results = {}
    for name, model in [
        ("most-popular", MostPopular()),
        ("als", ImplicitMF("als", factors=64, iterations=15, regularization=0.01, seed=0)),
        ("bpr", ImplicitMF("bpr", factors=64, iterations=100, learning_rate=0.01, seed=0)),
    ]:
        top = model.fit(train).recommend(users, 100, exclude=train + valid)
        results[name] = ranking_metrics(top, test)
        r = results[name]
        print(
            f"{name}: recall@10 {r['recall@10']:.4f} ndcg@10 {r['ndcg@10']:.4f} "
            f"hitrate@10 {r['hitrate@10']:.4f} mrr {r['mrr']:.4f} recall@100 {r['recall@100']:.4f}"
        )
    pop, als, bpr = results["most-popular"], results["als"], results["bpr"]
    assert pop["users"] == als["users"] == 943
    assert pop["recall@10"] == pytest.approx(0.0719, abs=5e-4)  # deterministic
    assert pop["ndcg@10"] == pytest.approx(0.0843, abs=5e-4)
    assert als["recall@10"] > pop["recall@10"] * 1.2
    assert als["ndcg@10"] > pop["ndcg@10"] * 1.2
    assert bpr["recall@10"] > 0.04 and bpr["recall@100"] > pop["recall@100"]
