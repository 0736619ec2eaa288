"""Tests of recsys.models.two_tower: shapes, norms, temperature, gradients, encoding whole
tables, and the builder from interaction data (the model needs nothing from recsys.train)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.retrieval_data import RetrievalDataSpec, build_retrieval_data
from recsys.data.tables import FeatureTable, take_rows
from recsys.models.two_tower import (
    TwoTower,
    TwoTowerSettings,
    build_two_tower,
    encode_items,
    encode_users,
)
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
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


def test_encoders_chunk_in_eval_mode_and_restore_the_mode() -> None:
    torch.manual_seed(0)
    model = _model(dropout=0.5)
    items = FeatureTable(torch.zeros(9, 0), random_kjt(ITEM_SPEC, 9))
    users = FeatureTable(torch.randn(7, 2), random_kjt(USER_SPEC, 7))
    ids, whole = encode_items(model, items, batch_size=100)
    _, chunked = encode_items(model, items, batch_size=2)  # eval mode: no dropout, same rows
    assert ids.tolist() == list(range(9)) and model.training
    torch.testing.assert_close(whole, chunked)
    u = encode_users(model, users, batch_size=3)
    torch.testing.assert_close(u, model.eval().user_vectors(users.dense, users.sparse))
    assert encode_users(model, FeatureTable(torch.zeros(0, 2), random_kjt(USER_SPEC, 0))).shape == (
        0,
        12,
    )


def test_build_two_tower_from_interactions() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["a"] * 6 + ["b"] * 6,
            "item_id": [f"i{k}" for k in range(6)] * 2,
            "timestamp": list(range(12)),
            "_row": list(range(12)),
            "genres": [["x", "y"], [], ["y"], None, ["x"], ["z"]] * 2,
        }
    )
    data = build_retrieval_data(frame, RetrievalDataSpec(item_multi_features=["genres"]))
    emb = EmbeddingConfig(dim=4, per_table={"genres": {"dim": 4, "pooling": "mean"}})
    model = build_two_tower(data, TwoTowerSettings(user_mlp=[8], item_mlp=[8], output_dim=6), emb)
    _, vecs = encode_items(model, data.catalog)
    assert vecs.shape == (6, 6) and model.no_weight_decay() == []
    with pytest.raises(ValueError, match="unknown features"):
        build_two_tower(data, TwoTowerSettings(), EmbeddingConfig(dim=4, per_table={"age": {}}))
