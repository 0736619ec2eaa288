"""FaissRetriever and Recommender on a real two-tower export: user and item vectors equal the
eager towers' within 1e-5 (stored histories, overrides, empty bags), retrieval equals brute
force over the exported item vectors, history exclusion, bad requests name the field, and the
retrieve -> rank -> value composition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from serving.inference.errors import RequestError
from serving.inference.ranker import OnnxRanker
from serving.inference.retriever import FaissRetriever, Recommender, RetrieverSettings

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def retriever(two_tower: tuple) -> FaissRetriever:
    return FaissRetriever.load(two_tower[0], RetrieverSettings(max_k=500))


def _eager_user(model: Any, feeds: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys,
        torch.from_numpy(np.concatenate([feeds[f"{k}.ids"] for k in keys])),
        torch.from_numpy(np.concatenate([feeds[f"{k}.lengths"] for k in keys])),
    )
    with torch.no_grad():
        return model.user_tower(None, kjt).numpy()


def test_vectors_match_the_eager_towers(two_tower: tuple, retriever: FaissRetriever) -> None:
    export_dir, model, data, frame = two_tower
    users = data.user_table_at(frame, int(frame["timestamp"].max()) + 1)
    with torch.no_grad():
        eager_users = model.user_tower(None, users.sparse).numpy()
    got = retriever.user_vectors([{"user_id": u} for u in data.users.ids])
    assert got.shape == eager_users.shape
    assert np.abs(got - eager_users).max() <= TOLERANCE
    one = retriever.user_vectors([{"user_id": data.users.ids[5]}])  # a batch of 1
    assert np.abs(one - eager_users[5:6]).max() <= TOLERANCE
    items = retriever.encode_items(data.items.ids)
    assert np.abs(items - np.load(export_dir / "item_vectors.npy")).max() <= TOLERANCE
    empty = {"user_id": data.users.ids[0], "history": [], "country": "never-seen"}
    feeds = retriever.inputs.user_feeds([empty, {"user_id": data.users.ids[1]}])
    assert feeds["history.lengths"][0] == 0 and feeds["country.ids"][0] == 0
    eager = _eager_user(model, feeds, retriever.inputs.user_keys)
    assert np.abs(retriever.user_vectors([empty])[0] - eager[0]).max() <= TOLERANCE


def test_history_and_side_feature_overrides(retriever: FaissRetriever) -> None:
    inputs = retriever.inputs
    user = next(i for i in range(len(inputs.user_ids)) if len(inputs.stored_history(i)) >= 3)
    uid = inputs.user_ids[user]
    stored = inputs.raw_item_ids(inputs.stored_history(user))
    same = retriever.user_vectors([{"user_id": uid}, {"user_id": uid, "history": stored}])
    assert np.array_equal(same[0], same[1])
    before = inputs.counters.snapshot().get("dropped", {}).get("history", 0)
    long = [*inputs.item_ids[:20], "no-such-item", int(inputs.item_ids[0])]
    feeds = inputs.user_feeds([{"user_id": int(uid), "history": long}])
    assert inputs.counters.snapshot()["dropped"]["history"] == before + 1
    kept = inputs.item_indices([*inputs.item_ids[:20], inputs.item_ids[0]])[-inputs.history_len :]
    assert feeds["history.ids"].tolist() == kept.tolist()
    assert feeds["history.lengths"].tolist() == [inputs.history_len]
    vocab_value = retriever.manifest.preprocessing["vocab"]["country"]
    vocab_value = str(pq.read_table(retriever.export_dir / vocab_value)["value"][0])
    stored_feeds = inputs.user_feeds([{"user_id": uid}])
    feeds = inputs.user_feeds([{"user_id": uid, "country": vocab_value, "age_bucket": None}])
    assert feeds["country.ids"][0] >= 1  # null (like absent) keeps the stored code
    assert feeds["age_bucket.ids"][0] == stored_feeds["age_bucket.ids"][0]


def _brute_force(retriever: FaissRetriever, export_dir: Path, request: dict) -> np.ndarray:
    vectors = np.load(export_dir / "item_vectors.npy")
    return vectors @ retriever.user_vectors([request])[0]


def test_retrieval_equals_brute_force_and_excludes_history(
    two_tower: tuple, retriever: FaissRetriever
) -> None:
    export_dir = two_tower[0]
    inputs = retriever.inputs
    user = next(i for i in range(len(inputs.user_ids)) if len(inputs.stored_history(i)) >= 2)
    request = {"user_id": inputs.user_ids[user]}
    scores = _brute_force(retriever, export_dir, request)
    order = np.argsort(-scores, kind="stable")
    ids, got = retriever.retrieve(request, 10, exclude_history=False)
    assert ids == inputs.raw_item_ids(order[:10])
    assert np.abs(got - scores[order[:10]]).max() <= TOLERANCE
    history = set(inputs.stored_history(user).tolist())
    fresh = [i for i in order if i not in history]
    ids, got = retriever.retrieve(request, 10)
    assert ids == inputs.raw_item_ids(np.array(fresh[:10]))
    everything, _ = retriever.retrieve(request, retriever.num_items)
    assert len(everything) == retriever.num_items - len(history)


@pytest.mark.parametrize(
    ("request_", "k", "field", "text"),
    [
        ({"user_id": "no-such-user"}, 5, "user_id", "unknown user"),
        ({"history": []}, 5, "user_id", "is required"),
        ({"user_id": 1.5}, 5, "user_id", "got float"),
        ({"user_id": "0", "colour": "red"}, 5, "colour", "unknown feature"),
        ({"user_id": "0", "history": "12"}, 5, "history", "expected a list of item ids"),
        ({"user_id": "0", "history": [1.5]}, 5, "history", "list element"),
        ({"user_id": "0", "country": ["US"]}, 5, "country", "got list"),
        ({"user_id": "0"}, 0, "k", "must be in"),
        ({"user_id": "0"}, 10**6, "k", "must be in"),
        ({"user_id": "0"}, True, "k", "must be an integer"),
        ({"user_id": "0"}, "5", "k", "must be an integer"),
    ],
)
def test_bad_retrieval_requests_name_the_field(
    retriever: FaissRetriever, request_: dict, k: Any, field: str, text: str
) -> None:
    request = dict(request_)
    if request.get("user_id") == "0":
        request["user_id"] = retriever.inputs.user_ids[0]
    with pytest.raises(RequestError, match=text) as info:
        retriever.retrieve(request, k)
    assert info.value.field == field


def test_bad_item_and_tower_inputs(retriever: FaissRetriever) -> None:
    with pytest.raises(RequestError, match="unknown item 'nope'") as info:
        retriever.encode_items([retriever.inputs.item_ids[0], "nope"])
    assert (info.value.field, info.value.row) == ("item_ids", 1)
    with pytest.raises(RequestError, match="is empty"):
        retriever.encode_items([])
    feeds = retriever.inputs.item_feeds(retriever.inputs.item_ids[:2])
    ok = retriever.tower_feeds("item_tower", feeds)
    assert np.array_equal(ok, retriever.encode_items(retriever.inputs.item_ids[:2]))
    feeds["topic.ids"] = feeds["topic.ids"] + 1000
    with pytest.raises(RequestError, match="outside") as info:
        retriever.tower_feeds("item_tower", feeds)
    assert info.value.field == "topic.ids"


def test_recommender_retrieves_ranks_and_orders_by_value(
    social_ranker: tuple[Path, Any], retriever: FaissRetriever
) -> None:
    ranker = OnnxRanker.load(social_ranker[0])
    recommender = Recommender(retriever, ranker, user_feature="user_id", item_feature="post_id")
    uid = retriever.inputs.user_ids[3]
    ids, retrieval_scores = retriever.retrieve({"user_id": uid}, 40)
    context = {"country": "US", "post_age_hours": 2.0}
    extra = {ids[0]: {"topic": "travel"}, ids[1]: {"media_type": "video"}}
    page = recommender.recommend({"user_id": uid}, k=40, n=10, context=context, item_features=extra)
    rows = [{"user_id": uid, "post_id": i, **context, **extra.get(i, {})} for i in ids]
    probabilities = ranker.score(rows)
    values = ranker.values(probabilities)
    order = np.argsort(-values, kind="stable")[:10]
    assert page.item_ids == [ids[i] for i in order]
    assert np.array_equal(page.values, values[order])
    assert np.array_equal(page.retrieval_scores, retrieval_scores[order])
    assert all(np.array_equal(page.probabilities[t], probabilities[t][order]) for t in ranker.tasks)
    assert set(page.latency_ms) == {"retrieve", "rank", "order", "total"}
    assert page.to_dict()["item_ids"] == page.item_ids
    with pytest.raises(RequestError, match="must be in") as info:
        recommender.recommend({"user_id": uid}, k=5, n=6)
    assert info.value.field == "n"
    with pytest.raises(RequestError, match="not a raw feature") as info:
        recommender.recommend({"user_id": uid}, k=5, n=2, context={"colour": 1})
    assert info.value.field == "context.colour"
    with pytest.raises(ValueError, match="item_feature 'item_id' is not a raw feature"):
        Recommender(retriever, ranker)
