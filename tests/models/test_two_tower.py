"""Tests of recsys.models.two_tower and recsys.train.retrieval: shapes, norms, temperature,
gradients, row gathering, and a learning test against most-popular on synthetic users."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.history import build_histories
from recsys.models.two_tower import TwoTower
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.train.retrieval import (
    FeatureTable,
    RetrievalTrainerConfig,
    TrainingPairs,
    encode_items,
    encode_users,
    take_rows,
    train_two_tower,
)
from recsys.types import FeatureSpec, SparseFeature

from ..conftest import random_kjt

USER_SPEC = FeatureSpec(
    dense=("d0", "d1"),
    sparse=(
        SparseFeature("user", 30),
        SparseFeature("history", 40, multi_hot=True, pooling="mean"),
    ),
    labels=(),
)
ITEM_SPEC = FeatureSpec(
    dense=(), sparse=(SparseFeature("item", 40), SparseFeature("topic", 5)), labels=()
)


def _model(fused: bool = False, **kwargs: Any) -> TwoTower:
    cfg = EmbeddingConfig(dim=8)
    opt = {"type": "rowwise_adagrad", "lr": 0.05}
    user = build_embeddings(embedding_tables(USER_SPEC, cfg), fused=fused, optimizer=opt)
    item = build_embeddings(embedding_tables(ITEM_SPEC, cfg), fused=fused, optimizer=opt)
    defaults: dict[str, Any] = {"user_mlp": [16], "item_mlp": [16], "output_dim": 12}
    return TwoTower(user, item, 2, 0, **{**defaults, **kwargs})


@pytest.mark.parametrize("fused", [False, True])
def test_shapes_and_unit_norm(fused: bool) -> None:
    torch.manual_seed(0)
    model = _model(fused)
    u, v = model(torch.randn(6, 2), random_kjt(USER_SPEC, 6), None, random_kjt(ITEM_SPEC, 9))
    assert u.shape == (6, 12) and v.shape == (9, 12)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(9))
    assert model.score(u, v).shape == (6, 9)
    torch.testing.assert_close(model.score(u, v), u @ v.t() / 0.05)
    # item dense of width 0 is accepted as well as None
    assert model.item_vectors(torch.zeros(9, 0), random_kjt(ITEM_SPEC, 9)).shape == (9, 12)
    with pytest.raises(ValueError, match="user tower expects dense B x 2"):
        model.user_vectors(torch.randn(6, 3), random_kjt(USER_SPEC, 6))


def test_temperature_fixed_and_learnable() -> None:
    fixed = _model(temperature=0.1)
    assert fixed.temperature.item() == pytest.approx(0.1)
    assert "log_temperature" not in dict(fixed.named_parameters())
    assert "log_temperature" in fixed.state_dict()  # a buffer, saved with the model

    learned = _model(temperature=0.1, learn_temperature=True, min_temperature=0.02)
    assert isinstance(learned.log_temperature, torch.nn.Parameter)
    u, v = learned(torch.randn(4, 2), random_kjt(USER_SPEC, 4), None, random_kjt(ITEM_SPEC, 4))
    learned.score(u, v).logsumexp(1).mean().backward()
    assert learned.log_temperature.grad is not None and learned.log_temperature.grad != 0
    with torch.no_grad():
        learned.log_temperature.fill_(-10.0)  # below the clamp
    assert learned.temperature.item() == pytest.approx(0.02)
    with pytest.raises(ValueError, match="outside"):
        _model(temperature=2.0)


def test_gradients_reach_both_towers() -> None:
    torch.manual_seed(0)
    model = _model()
    u, v = model(torch.randn(5, 2), random_kjt(USER_SPEC, 5), None, random_kjt(ITEM_SPEC, 5))
    torch.nn.functional.cross_entropy(model.score(u, v), torch.arange(5)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    for tower in (model.user_tower, model.item_tower):
        assert tower.proj.weight.grad.abs().sum() > 0
        for p in tower.embeddings.parameters():
            assert p.grad.abs().sum() > 0


def test_take_rows_gathers_bags_of_every_key() -> None:
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=["a", "b"],
        values=torch.tensor([1, 2, 3, 10, 11, 12, 13]),
        lengths=torch.tensor([1, 0, 2, 2, 1, 1]),  # a: [1], [], [2,3]; b: [10,11], [12], [13]
    )
    out = take_rows(kjt, torch.tensor([2, 0, 2, 1]))
    assert out.keys() == ["a", "b"] and out.stride() == 4
    assert [x.tolist() for x in out["a"].to_dense()] == [[2, 3], [1], [2, 3], []]
    assert [x.tolist() for x in out["b"].to_dense()] == [[13], [10, 11], [13], [12]]
    assert take_rows(kjt, torch.tensor([], dtype=torch.long)).stride() == 0


# -- learning on synthetic users -----------------------------------------------------------------
NUM_USERS, NUM_ITEMS, NUM_TOPICS, EVENTS = 2000, 500, 10, 16


def _world(seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Users with two favourite topics (of 10) choose 16 distinct items with probability
    proportional to a Zipf popularity times exp(topic affinity)."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, NUM_TOPICS, NUM_ITEMS)
    popularity = rng.permutation(1.0 / (np.arange(NUM_ITEMS) + 10.0))
    fav = rng.integers(0, NUM_TOPICS, (NUM_USERS, 2))
    affinity = np.zeros((NUM_USERS, NUM_TOPICS))
    affinity[np.arange(NUM_USERS), fav[:, 0]] += 3.0
    affinity[np.arange(NUM_USERS), fav[:, 1]] += 2.0
    logits = np.log(popularity)[None, :] + affinity[:, topic]  # U x I
    picks = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)[:, :EVENTS]
    step = np.tile(np.arange(EVENTS), NUM_USERS) * 10 + rng.integers(0, 3, NUM_USERS * EVENTS)
    frame = pl.DataFrame(
        {"user": np.repeat(np.arange(NUM_USERS), EVENTS), "item": picks.reshape(-1), "ts": step}
    ).with_columns(pl.int_range(pl.len()).alias("_row"))
    return frame, topic


def _kjt(keys: list[str], single: list[np.ndarray], bags: list[list[int]]) -> KeyedJaggedTensor:
    """One single-valued feature per array in ``single``, then one multi-hot feature of bags."""
    values = [torch.tensor(a, dtype=torch.long) for a in single]
    lengths = [torch.ones(len(a), dtype=torch.long) for a in single]
    if bags:
        lengths.append(torch.tensor([len(b) for b in bags], dtype=torch.long))
        values.append(torch.tensor([i for b in bags for i in b], dtype=torch.long))
    return KeyedJaggedTensor.from_lengths_sync(keys, torch.cat(values), torch.cat(lengths))


def _users(frame: pl.DataFrame) -> FeatureTable:
    dense = torch.tensor(np.log1p(frame["history"].list.len().to_numpy()), dtype=torch.float32)
    kjt = _kjt(["user", "history"], [frame["user"].to_numpy()], frame["history"].to_list())
    return FeatureTable(dense.unsqueeze(1), kjt)


def _recall_at_10(scores: torch.Tensor, seen: torch.Tensor, target: torch.Tensor) -> float:
    top = scores.masked_fill(seen, float("-inf")).topk(10, dim=1).indices
    return (top == target.unsqueeze(1)).any(1).float().mean().item()


def _data() -> dict[str, Any]:
    frame, topic = _world()
    frame = build_histories(frame, "user", "item", "ts", max_len=20)
    last = pl.col("ts") == pl.col("ts").max().over("user")
    train, test = frame.filter(~last), frame.filter(last).sort("user")
    assert test["user"].n_unique() == NUM_USERS == test.height
    catalog = FeatureTable(
        torch.zeros(NUM_ITEMS, 0), _kjt(["item", "topic"], [np.arange(NUM_ITEMS), topic], [])
    )
    train_users = torch.tensor(train["user"].to_numpy())
    train_items = torch.tensor(train["item"].to_numpy())
    seen = torch.zeros(NUM_USERS, NUM_ITEMS, dtype=torch.bool)
    seen[train_users, train_items] = True
    return {
        "pairs": TrainingPairs(_users(train), train_items),
        "test_users": _users(test),  # history = every train event (strictly before the test)
        "target": torch.tensor(test["item"].to_numpy()),
        "catalog": catalog,
        "seen": seen,
        "popularity": torch.bincount(train_items, minlength=NUM_ITEMS).float(),
    }


def _tower_model(seed: int = 0) -> TwoTower:
    torch.manual_seed(seed)
    cfg = EmbeddingConfig(dim=16)
    user_spec = FeatureSpec(
        dense=("n_history",),
        sparse=(
            SparseFeature("user", NUM_USERS),
            SparseFeature("history", NUM_ITEMS, multi_hot=True, pooling="mean"),
        ),
        labels=(),
    )
    item_spec = FeatureSpec(
        dense=(),
        sparse=(SparseFeature("item", NUM_ITEMS), SparseFeature("topic", NUM_TOPICS)),
        labels=(),
    )
    return TwoTower(
        build_embeddings(embedding_tables(user_spec, cfg), fused=False),
        build_embeddings(embedding_tables(item_spec, cfg), fused=False),
        user_dense_dim=1,
        item_dense_dim=0,
        user_mlp=[64],
        item_mlp=[64],
        output_dim=32,
        temperature=0.1,
        learn_temperature=True,
    )


@pytest.fixture(scope="module")
def synthetic() -> dict[str, Any]:
    return _data()


def _train_and_recall(data: dict[str, Any], seed: int = 0, **config: Any) -> tuple[float, dict]:
    model = _tower_model(seed)
    stats = train_two_tower(
        model, data["pairs"], RetrievalTrainerConfig(seed=seed, **config), data["catalog"]
    )
    ids, item_vecs = encode_items(model, data["catalog"], batch_size=128)
    assert torch.equal(ids, torch.arange(NUM_ITEMS)) and item_vecs.shape == (NUM_ITEMS, 32)
    user_vecs = encode_users(model, data["test_users"], batch_size=512)
    assert model.training  # the encoders restore the mode
    return _recall_at_10(user_vecs @ item_vecs.t(), data["seen"], data["target"]), stats


def _popular_recall(data: dict[str, Any]) -> float:
    scores = data["popularity"].expand(NUM_USERS, -1)
    return _recall_at_10(scores, data["seen"], data["target"])


def test_two_tower_beats_most_popular_recall_at_10(synthetic: dict[str, Any]) -> None:
    """Sampled softmax with log-Q and accidental-hit removal, 3 epochs over 30k pairs:
    Recall@10 over all 500 items (the user's train items excluded) more than doubles
    most-popular's. Measured: model 0.29, most-popular 0.12, an oracle with the true logits
    0.31."""
    recall, stats = _train_and_recall(synthetic, batch_size=512, epochs=3, lr=3e-3)
    assert stats["steps"] == 3 * -(-len(synthetic["pairs"]) // 512)
    assert stats["epoch_losses"][-1] < stats["epoch_losses"][0] - 0.3, stats
    assert stats["accidental_hits"] > 0  # popular items repeat inside batches
    assert 0.01 <= stats["temperature"] <= 1.0 and stats["temperature"] != pytest.approx(0.1)
    popular = _popular_recall(synthetic)
    assert recall > 2.0 * popular, (recall, popular)
    assert recall > popular + 0.12, (recall, popular)


def test_logq_correction_removes_the_popularity_bias(synthetic: dict[str, Any]) -> None:
    """In-batch negatives are drawn by popularity; without log-Q the model under-scores popular
    items. Measured after 2 epochs: 0.28 with log-Q, 0.10 without (most-popular 0.12)."""
    common: dict[str, Any] = {"batch_size": 512, "epochs": 2, "lr": 3e-3}
    with_q, _ = _train_and_recall(synthetic, seed=1, logq_correction=True, **common)
    without_q, _ = _train_and_recall(synthetic, seed=1, logq_correction=False, **common)
    assert with_q > without_q + 0.1, (with_q, without_q)


def test_bce_and_mixed_negatives_train(synthetic: dict[str, Any]) -> None:
    """Pointwise BCE with 128 uniform negatives, and sampled softmax with mixed negatives
    (log-Q of the mixture): both lower their loss and beat most-popular after two epochs.
    Measured: BCE 0.23, mixed 0.28, most-popular 0.12."""
    popular = _popular_recall(synthetic)
    for loss in ("bce", "sampled_softmax"):
        recall, stats = _train_and_recall(
            synthetic,
            seed=1,
            batch_size=512,
            epochs=2,
            lr=3e-3,
            loss=loss,
            num_uniform_negatives=128,
        )
        assert stats["epoch_losses"][1] < stats["epoch_losses"][0], (loss, stats)
        assert recall > popular + 0.05, (loss, recall, popular)


def test_trainer_accepts_ready_batches_and_max_steps() -> None:
    torch.manual_seed(0)
    model = _model(fused=True)  # fused embeddings: their optimizer runs inside backward
    item_ids = torch.randint(0, 40, (8,))
    catalog_kjt = _kjt(["item", "topic"], [np.arange(40), np.arange(40) % 5], [])
    catalog = FeatureTable(torch.zeros(40, 0), catalog_kjt)
    items = catalog.take(item_ids)
    batch = (torch.randn(8, 2), random_kjt(USER_SPEC, 8), items.dense, items.sparse, item_ids)
    before = [p.detach().clone() for p in model.user_tower.embeddings.parameters()]
    config = RetrievalTrainerConfig(epochs=3, max_steps=5, num_uniform_negatives=4)
    stats = train_two_tower(model, [batch, batch], config, catalog)
    assert stats["steps"] == 5 and stats["examples"] == 40 and stats["epochs"] == 3
    after = list(model.user_tower.embeddings.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    with pytest.raises(ValueError, match="loss must be one of"):
        RetrievalTrainerConfig(loss="hinge")
    with pytest.raises(ValueError, match="catalog rows"):
        bad = (*batch[:4], item_ids + 100)
        train_two_tower(model, [bad], RetrievalTrainerConfig(), catalog)
