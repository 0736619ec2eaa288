"""The two-tower trained by the one training loop (:class:`recsys.train.trainer.Trainer` with
:class:`recsys.train.tasks.retrieval.RetrievalTask`): a learning test against most-popular on
synthetic users, log-Q, BCE and mixed negatives, ready batches, and exact resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.history import build_histories
from recsys.data.tables import FeatureTable, PairBatches, TrainingPairs
from recsys.models.two_tower import TwoTower, encode_items, encode_users
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.train.checkpoint import list_checkpoints
from recsys.train.optimizers import sparse_optimizer_factory
from recsys.train.tasks.retrieval import RetrievalLossConfig, RetrievalTask
from recsys.train.trainer import CheckpointConfig, EarlyStoppingConfig, Trainer, TrainerConfig
from recsys.types import FeatureSpec, SparseFeature

from ..conftest import random_kjt
from ..models.test_two_tower import USER_SPEC, _model

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


def fit(
    model: TwoTower,
    train: Any,
    catalog: FeatureTable,
    *,
    seed: int = 0,
    lr: float = 1e-3,
    checkpoint_dir: Path | None = None,
    loss: dict[str, Any] | None = None,
    **trainer: Any,
) -> tuple[Trainer, dict[str, Any]]:
    """Trains like a two-tower run: Adam on the towers, Adagrad (lr 0.05) on the tables."""
    cfg = TrainerConfig(
        progress=False, early_stopping=EarlyStoppingConfig(enabled=False), **trainer
    )
    t = Trainer(
        model,
        cfg,
        task=RetrievalTask(catalog, RetrievalLossConfig(**(loss or {})), seed=seed),
        dense_optimizer=lambda p: torch.optim.Adam(p, lr=lr),
        sparse_optimizer=sparse_optimizer_factory({"type": "adagrad", "lr": 0.05}),
        checkpoint_dir=checkpoint_dir,
    )
    if isinstance(train, TrainingPairs):
        train = PairBatches(train, catalog, cfg.batch_size, seed=seed)
    return t, t.fit(train).summary()


def _train_and_recall(
    data: dict[str, Any], seed: int = 0, loss: dict[str, Any] | None = None, **config: Any
) -> tuple[float, dict]:
    model = _tower_model(seed)
    _, stats = fit(model, data["pairs"], data["catalog"], seed=seed, loss=loss, **config)
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
    recall, stats = _train_and_recall(synthetic, batch_size=512, max_epochs=3, lr=3e-3)
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
    common: dict[str, Any] = {"batch_size": 512, "max_epochs": 2, "lr": 3e-3}
    with_q, _ = _train_and_recall(synthetic, seed=1, loss={"logq_correction": True}, **common)
    without_q, _ = _train_and_recall(synthetic, seed=1, loss={"logq_correction": False}, **common)
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
            max_epochs=2,
            lr=3e-3,
            loss={"kind": loss, "num_uniform_negatives": 128},
        )
        assert stats["epoch_losses"][1] < stats["epoch_losses"][0], (loss, stats)
        assert recall > popular + 0.05, (loss, recall, popular)


class ReadyBatches:
    """A fixed list of batches with the loop's protocol."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass

    def iter_from(self, batch_index: int) -> Iterator[Any]:
        return iter(self.batches[batch_index:])

    def __iter__(self) -> Iterator[Any]:
        return self.iter_from(0)


def test_trainer_accepts_ready_batches_and_max_steps() -> None:
    from recsys.data.tables import RetrievalBatch

    torch.manual_seed(0)
    model = _model(fused=True)  # fused embeddings: their optimizer runs inside backward
    item_ids = torch.randint(0, 40, (8,))
    catalog_kjt = _kjt(["item", "topic"], [np.arange(40), np.arange(40) % 5], [])
    catalog = FeatureTable(torch.zeros(40, 0), catalog_kjt)
    items = catalog.take(item_ids)
    batch = RetrievalBatch(
        torch.randn(8, 2), random_kjt(USER_SPEC, 8), items.dense, items.sparse, item_ids
    )
    before = [p.detach().clone() for p in model.user_tower.embeddings.parameters()]
    _, stats = fit(
        model,
        ReadyBatches([batch, batch]),
        catalog,
        max_epochs=3,
        max_steps=5,
        loss={"num_uniform_negatives": 4},
    )
    assert stats["steps"] == 5 and stats["examples"] == 40 and len(stats["epoch_losses"]) == 3
    after = list(model.user_tower.embeddings.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    with pytest.raises(ValueError, match=r"loss\.kind must be one of"):
        RetrievalLossConfig(kind="hinge")
    with pytest.raises(ValueError, match="catalog rows"):
        bad = RetrievalBatch(
            *[batch.user_dense, batch.user_sparse, batch.item_dense],
            batch.item_sparse,
            item_ids + 100,
        )
        fit(model, ReadyBatches([bad]), catalog)


def test_killed_two_tower_run_resumes_exactly(synthetic: dict[str, Any], tmp_path: Path) -> None:
    """A run killed mid-epoch and resumed from its last checkpoint ends with the same weights,
    losses, estimator and negatives as one that was never interrupted (uniform negatives and a
    learned temperature, so the sampler's generator and the Adam groups are in play)."""
    pairs = TrainingPairs(
        synthetic["pairs"].users.take(torch.arange(4000)), synthetic["pairs"].item_ids[:4000]
    )
    common: dict[str, Any] = {
        "batch_size": 256,
        "max_epochs": 2,
        "lr": 3e-3,
        "loss": {"num_uniform_negatives": 32},
    }
    full = _tower_model(3)
    _, stats_full = fit(full, pairs, synthetic["catalog"], seed=3, **common)

    class Killed(RuntimeError):
        pass

    class KillAt(PairBatches):
        def iter_from(self, batch_index: int) -> Iterator[Any]:
            for i, b in enumerate(super().iter_from(batch_index), start=batch_index):
                if self.epoch == 1 and i == 7:
                    raise Killed
                yield b

    ckpt = tmp_path / "ckpt"
    killed = _tower_model(3)
    with pytest.raises(Killed):
        fit(
            killed,
            KillAt(pairs, synthetic["catalog"], 256, seed=3),
            synthetic["catalog"],
            seed=3,
            checkpoint_dir=ckpt,
            checkpoint=CheckpointConfig(every_steps=5),
            **common,
        )
    assert list_checkpoints(ckpt)
    resumed = _tower_model(99)  # different init: everything must come from the checkpoint
    _, stats_resumed = fit(
        resumed,
        pairs,
        synthetic["catalog"],
        seed=3,
        checkpoint_dir=ckpt,
        checkpoint=CheckpointConfig(every_steps=5, resume="latest"),
        **common,
    )
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert stats_resumed["epoch_losses"] == stats_full["epoch_losses"]
    assert stats_resumed["accidental_hits"] == stats_full["accidental_hits"]
    assert stats_resumed["steps"] == stats_full["steps"]
