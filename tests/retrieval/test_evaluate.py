"""The retrieval runner's evaluation: what is excluded, what counts as relevant, and which
history a user vector sees at valid and test time (hand-built examples)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.data.retrieval_data import RetrievalDataSpec, build_retrieval_data
from recsys.models.two_tower import TwoTowerSettings, build_two_tower
from recsys.modules.embedding import EmbeddingConfig
from recsys.retrieval.evaluate import evaluate_topk, exact_topk, relevant_and_known


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


def test_relevant_and_known_drops_seen_items_and_users_without_new_ones() -> None:
    known = csr([[0, 1], [2], [3]], 5)
    target = csr([[1, 4], [2], []], 5)  # user 0: item 1 already known; user 1: only known
    users, relevant, exclude = relevant_and_known(target, known)
    assert users.tolist() == [0]
    assert relevant.toarray().tolist() == [[0, 0, 0, 0, 1]]
    assert exclude.toarray().tolist() == [[1, 1, 0, 0, 0]]


def test_exact_topk_never_returns_excluded_items() -> None:
    # Item 0 scores best for everyone but is known to user 0: user 0 gets item 2 first.
    user_vecs = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    item_vecs = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]], dtype=np.float32)
    exclude = csr([[0], []], 3)
    top = exact_topk(user_vecs, item_vecs, exclude, 2)
    assert top.tolist() == [[2, 1], [0, 2]]
    m = evaluate_topk(top, csr([[2], [2]], 3), ks=(1, 2))
    assert m["recall@1"] == pytest.approx(0.5) and m["recall@2"] == pytest.approx(1.0)


def _events() -> pl.DataFrame:
    # User a: 10 events (8 train, 1 valid, 1 test); user b: 3 events (all train).
    rows = [("a", f"i{k}", 100 + k) for k in range(10)] + [
        ("b", f"i{k}", 50 + k) for k in (0, 1, 2)
    ]
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "_row": list(range(len(rows))),
            "genre": [f"g{k % 2}" for k in range(len(rows))],
        }
    )


def test_split_masks_and_histories_on_a_hand_built_log() -> None:
    spec = RetrievalDataSpec(item_features=["genre"], history_len=3)
    data = build_retrieval_data(_events(), spec)
    a, b = data.users.to_index(["a", "b"]).tolist()
    items = data.items.to_index([f"i{k}" for k in range(10)])
    assert data.splits["train"][a].indices.tolist() == sorted(items[:8].tolist())
    assert data.splits["valid"][a].indices.tolist() == [items[8]]
    assert data.splits["test"][a].indices.tolist() == [items[9]]
    assert data.splits["train"][b].nnz == 3  # fewer than 5 interactions: all train
    # Valid excludes train; test excludes train + valid.
    assert data.known("valid")[a].indices.tolist() == sorted(items[:8].tolist())
    assert data.known("test")[a].indices.tolist() == sorted(items[:9].tolist())
    users, relevant, _ = relevant_and_known(data.splits["test"], data.known("test"))
    assert users.tolist() == [a] and relevant.indices.tolist() == [items[9]]
    # Histories: the last 3 items before valid (end of train) and before test (end of valid).
    for split, last in (("valid", items[5:8]), ("test", items[6:9])):
        table = data.user_table(np.array([a]), split)
        bags = table.sparse.to_dict()
        assert bags["history"].values().tolist() == last.tolist(), split
        assert bags["user"].values().tolist() == [a]
    # Training pairs: a train event's history holds only strictly earlier items.
    hist = data.train_pairs.users.sparse.to_dict()["history"]
    lengths = hist.lengths().tolist()
    assert len(lengths) == 11 and max(lengths) == 3 and lengths.count(0) == 2
    # Item side: genre vocabulary from train, 0 reserved for missing.
    assert data.cardinalities["genre"] == 3


def test_a_model_encodes_the_hand_built_log() -> None:
    data = build_retrieval_data(_events(), RetrievalDataSpec(item_features=["genre"]))
    model = build_two_tower(
        data, TwoTowerSettings(user_mlp=[], item_mlp=[], output_dim=4), EmbeddingConfig(dim=4)
    )
    table = data.user_table(np.arange(len(data.users)), "test")
    u = model.user_vectors(table.dense, table.sparse)
    v = model.item_vectors(data.catalog.dense, data.catalog.sparse)
    assert u.shape == (2, 4) and v.shape == (10, 4)


def test_absent_side_features_are_dropped_not_an_error() -> None:
    """A release without user demographics (MovieLens "latest") trains without them."""
    spec = RetrievalDataSpec(
        user_features=["age", "gender"], item_features=["genre", "year"], history_len=3
    )
    data = build_retrieval_data(_events(), spec)
    assert data.spec.user_features == [] and data.spec.item_features == ["genre"]
    assert data.summary["absent_features"] == ["age", "gender", "year"]
    assert data.user_keys == ["user", "history"]
    assert data.catalog.sparse.keys() == ["item", "genre"]
    with pytest.raises(Exception, match="missing column"):
        build_retrieval_data(_events().drop("timestamp"), spec)


def test_empty_multi_valued_lists_are_empty_bags() -> None:
    """Movies with "(no genres listed)" (an empty list) and null lists keep their row: the
    catalog has one bag per item, empty for them, and the vocabulary skips unseen values."""
    events = _events().with_columns(
        pl.Series(
            "genres",
            [
                *(["x", "y"], [], None, ["y"], [], ["x"], ["z"], ["x", None], [], ["w"]),
                *(["x"], [], ["y"]),
            ],
        )
    )
    data = build_retrieval_data(events, RetrievalDataSpec(item_multi_features=["genres"]))
    bags = data.catalog.sparse.to_dict()["genres"]
    assert bags.lengths().shape[0] == len(data.items) == 10
    by_item = dict(zip(data.items.ids, bags.lengths().tolist()))
    # items i1, i2 (null), i4, i8 have no genre; i0 two; i7 one (its null dropped)
    assert by_item["i1"] == 0 and by_item["i2"] == 0 and by_item["i0"] == 2
    assert by_item["i7"] == 1
    assert int(bags.lengths().sum()) == bags.values().shape[0]
