"""Tests of recsys.modules: embeddings (plain and fused), MLP, interactions, experts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.modules.embedding import (
    EmbeddingConfig,
    build_embeddings,
    check_embeddings,
    embedding_layout,
    embedding_tables,
    is_embedding_module,
    pooled_width,
    split_parameters,
)
from recsys.modules.experts import PLE, MMoE, PLELevel
from recsys.modules.interaction import CrossLayer, CrossNetwork, DotInteraction
from recsys.modules.mlp import MLP
from recsys.types import FeatureSpec, SparseFeature

from ..conftest import random_kjt

SPEC = FeatureSpec(
    dense=("d0", "d1"),
    sparse=(
        SparseFeature("user", 30),
        SparseFeature("tags", 12, multi_hot=True, pooling="mean"),
        SparseFeature("item", 40),
        SparseFeature("genres", 8, multi_hot=True, pooling="sum"),
    ),
    labels=("click",),
)


make_kjt = random_kjt


RWA = {"type": "rowwise_adagrad", "lr": 0.1}


# ---------------------------------------------------------------- embedding tables


def test_embedding_tables_names_pooling_and_overrides() -> None:
    cfg = EmbeddingConfig(dim=8, per_table={"item": {"dim": 12}, "user": {"pooling": "mean"}})
    tables = embedding_tables(SPEC, cfg)
    assert [t.name for t in tables] == ["t_user", "t_tags", "t_item", "t_genres"]
    assert [t.feature_names for t in tables] == [["user"], ["tags"], ["item"], ["genres"]]
    assert [t.num_embeddings for t in tables] == [30, 12, 40, 8]
    assert [t.embedding_dim for t in tables] == [8, 8, 12, 8]
    assert [t.pooling for t in tables] == [
        PoolingType.MEAN,
        PoolingType.MEAN,
        PoolingType.SUM,
        PoolingType.SUM,
    ]


def test_embedding_tables_rejects_unknown_features_and_keys() -> None:
    with pytest.raises(ValueError, match=r"\['nope', 'zzz'\]"):
        embedding_tables(SPEC, EmbeddingConfig(per_table={"nope": {}, "zzz": {}, "item": {}}))
    with pytest.raises(ValueError, match="unknown keys"):
        embedding_tables(SPEC, EmbeddingConfig(per_table={"item": {"dimm": 3}}))
    with pytest.raises(ValueError, match="pooling"):
        embedding_tables(SPEC, EmbeddingConfig(per_table={"item": {"pooling": "max"}}))
    with pytest.raises(ValueError, match="init"):
        EmbeddingConfig(init="xavier")


def test_normal_init_with_std_applies_to_both_flavours() -> None:
    spec = FeatureSpec(dense=(), sparse=(SparseFeature("x", 4000),), labels=("y",))
    cfg = EmbeddingConfig(dim=8, init="normal", per_table={"x": {"init_std": 0.05}})
    for fused in (False, True):
        torch.manual_seed(0)
        ebc = build_embeddings(embedding_tables(spec, cfg), fused=fused, optimizer=RWA)
        w = ebc.embedding_bags["t_x"].weight.detach()
        assert abs(float(w.std()) - 0.05) < 0.003
        assert float(w.abs().max()) > 0.05 * 3  # normal tails, not a uniform


def test_build_embeddings_flavours() -> None:
    tables = embedding_tables(SPEC, EmbeddingConfig(dim=8))
    plain = build_embeddings(tables, fused=False)
    fused = build_embeddings(tables, fused=True, optimizer=RWA)
    assert isinstance(plain, EmbeddingBagCollection)
    assert isinstance(fused, FusedEmbeddingBagCollection)
    assert is_embedding_module(plain) and is_embedding_module(fused)
    assert not is_embedding_module(nn.Linear(2, 2))
    assert {t.name for t in fused.embedding_bag_configs()} == {t.name for t in tables}
    kjt = make_kjt(SPEC, 5)
    assert plain(kjt).values().shape == (5, 32)
    assert fused(kjt).values().shape == (5, 32)


def test_build_embeddings_fused_errors() -> None:
    tables = embedding_tables(SPEC, EmbeddingConfig(dim=8, per_table={"item": {"dim": 6}}))
    with pytest.raises(ValueError, match=r"t_item \(dim 6\)"):
        build_embeddings(tables, fused=True, optimizer=RWA)
    ok = embedding_tables(SPEC, EmbeddingConfig(dim=8))
    with pytest.raises(ValueError, match="optimizer"):
        build_embeddings(ok, fused=True)
    with pytest.raises(ValueError, match="rowwise_adagrad"):
        build_embeddings(ok, fused=True, optimizer={"type": "lamb"})
    with pytest.raises(ValueError, match="only available on CUDA"):
        build_embeddings(ok, fused=True, optimizer={"type": "adam", "betas": (0.9, 0.99)})


@pytest.mark.parametrize(
    "optimizer",
    [
        RWA,
        {"type": "adagrad", "lr": 0.1, "eps": 1e-8},
        {"type": "sgd", "lr": 0.5},
    ],
    ids=lambda o: o["type"],
)
def test_fused_backward_updates_touched_rows_only(optimizer: dict) -> None:
    spec = FeatureSpec(dense=(), sparse=(SparseFeature("x", 10),), labels=("y",))
    ebc = build_embeddings(
        embedding_tables(spec, EmbeddingConfig(dim=4)), fused=True, optimizer=optimizer
    )
    w = ebc.embedding_bags["t_x"].weight
    before = w.detach().clone()
    kjt = KeyedJaggedTensor.from_lengths_sync(["x"], torch.tensor([1, 3, 3]), torch.tensor([1, 2]))
    out = ebc(kjt).values()
    assert out.requires_grad
    out.sum().backward()  # the update happens here, inside backward
    changed = (w.detach() - before).abs().sum(dim=1) > 0
    assert changed.tolist() == [i in (1, 3) for i in range(10)]
    assert w.grad is None


def test_fused_weight_decay_on_cpu_warns() -> None:
    tables = embedding_tables(SPEC, EmbeddingConfig(dim=4))
    with pytest.warns(UserWarning, match="ignore weight_decay"):
        build_embeddings(tables, fused=True, optimizer={**RWA, "weight_decay": 1e-5})


def test_fused_matches_plain_forward_with_interleaved_pooling() -> None:
    # sum, mean, sum, sum pooling interleaved: TorchRec's fused collection groups tables by
    # pooling; build_embeddings reorders them so the KeyedTensor keys stay correct.
    tables = embedding_tables(SPEC, EmbeddingConfig(dim=4, per_table={"item": {"dim": 8}}))
    plain = build_embeddings(tables, fused=False)
    fused = build_embeddings(tables, fused=True, optimizer=RWA)
    fused.load_state_dict(plain.state_dict())
    kjt = make_kjt(SPEC, 16, 3)
    a, b = plain(kjt).to_dict(), fused(kjt).to_dict()
    assert set(a) == set(b) == set(SPEC.sparse_names)
    for name in a:
        torch.testing.assert_close(a[name], b[name])
    layout = dict(embedding_layout(fused))
    assert layout == {"user": 4, "tags": 4, "item": 8, "genres": 4}


def test_split_parameters() -> None:
    tables = embedding_tables(SPEC, EmbeddingConfig(dim=4))
    for fused in (False, True):
        model = nn.ModuleDict(
            {"emb": build_embeddings(tables, fused=fused, optimizer=RWA), "mlp": MLP(3, [4, 2])}
        )
        sparse, dense = split_parameters(model)
        assert len(sparse) == 4 and len(dense) == 4
        assert {id(p) for p in sparse}.isdisjoint({id(p) for p in dense})
        assert {id(p) for p in model["mlp"].parameters()} == {id(p) for p in dense}


def test_check_embeddings_names_missing_and_extra() -> None:
    other = FeatureSpec(dense=(), sparse=(SparseFeature("user", 30),), labels=("y",))
    ebc = build_embeddings(embedding_tables(SPEC, EmbeddingConfig(dim=4)), fused=False)
    with pytest.raises(ValueError, match=r"not in the spec.*genres"):
        check_embeddings(other, ebc, model="M")


def test_pooled_width_is_the_width_of_the_pooled_output() -> None:
    tables = embedding_tables(SPEC, EmbeddingConfig(dim=4, per_table={"item": {"dim": 12}}))
    ebc = build_embeddings(tables, fused=False)
    assert pooled_width(tables) == 3 * 4 + 12 == ebc(make_kjt(SPEC, 5)).values().shape[1]
    assert pooled_width([]) == 0


# ---------------------------------------------------------------- MLP


def test_mlp_shapes_and_options() -> None:
    mlp = MLP(5, [7, 3], activation="gelu", dropout=0.1)
    assert mlp(torch.randn(4, 5)).shape == (4, 3) and mlp.out_features == 3
    head = MLP(5, [7, 2], final_activation=False)
    assert isinstance(head.layers[-1], nn.Linear)
    assert MLP(5, []).out_features == 5
    with pytest.raises(ValueError, match="activation"):
        MLP(5, [3], activation="swishy")
    with pytest.raises(ValueError, match="sizes"):
        MLP(5, [3, 0])
    with pytest.raises(ValueError, match="dropout"):
        MLP(5, [3], dropout=1.0)


# ---------------------------------------------------------------- interactions


@pytest.mark.parametrize("self_interaction", [False, True])
def test_dot_interaction_matches_naive_loop(self_interaction: bool) -> None:
    b, f, d = 3, 5, 4
    x = torch.randn(b, f, d)
    inter = DotInteraction(f, self_interaction)
    out = inter(x)
    expected = torch.tensor(
        [
            [
                float(x[n, i] @ x[n, j])
                for i in range(f)
                for j in range(f)
                if (j >= i if self_interaction else j > i)
            ]
            for n in range(b)
        ]
    )
    assert out.shape == (b, inter.out_features)
    assert inter.out_features == (15 if self_interaction else 10)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("low_rank", [None, 3])
def test_cross_layer_matches_formula(low_rank: int | None) -> None:
    torch.manual_seed(0)
    i = 6
    layer = CrossLayer(i, low_rank)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()  # biases are zero-initialized; make them count
    x0, xl = torch.randn(4, i), torch.randn(4, i)
    if low_rank is None:
        w, bias = layer.w.weight, layer.w.bias
    else:
        w, bias = layer.u.weight @ layer.v.weight, layer.u.bias  # U V^T: I x I
    expected = torch.stack(
        [x0[n] * (w @ xl[n] + bias) + xl[n] for n in range(4)]  # x0 ⊙ (W x_l + b) + x_l
    )
    torch.testing.assert_close(layer(x0, xl), expected)

    net = CrossNetwork(i, 2, low_rank)
    x = x0
    for lyr in net.layers:
        x = lyr(x0, x)
    torch.testing.assert_close(net(x0), x)
    assert CrossNetwork(i, 0)(x0) is x0
    with pytest.raises(ValueError, match="low_rank"):
        CrossLayer(i, 0)


# ---------------------------------------------------------------- experts


def test_mmoe_gates_sum_to_one_and_shapes() -> None:
    mmoe = MMoE(10, num_tasks=3, num_experts=4, expert_mlp=[8, 5])
    x = torch.randn(6, 10)
    gates = mmoe.gate_weights(x)
    assert gates.shape == (6, 3, 4)
    torch.testing.assert_close(gates.sum(-1), torch.ones(6, 3))
    out = mmoe(x)
    assert out.shape == (6, 3, 5)
    experts = torch.stack([e(x) for e in mmoe.experts], 1)
    torch.testing.assert_close(out[:, 1], (gates[:, 1, :, None] * experts).sum(1))
    with pytest.raises(ValueError, match="num_experts"):
        MMoE(10, 1, 0, [4])


def test_ple_levels_shapes_and_gates() -> None:
    ple = PLE(10, 2, num_levels=2, num_shared_experts=2, num_task_experts=1, expert_mlp=[8, 5])
    x = torch.randn(4, 10)
    assert ple(x).shape == (4, 2, 5)
    first, last = ple.levels
    assert first.shared_gate is not None and last.shared_gate is None
    gates = first.gate_weights([x, x, x])
    assert [g.shape[1] for g in gates] == [3, 3, 4]  # K + S per task, T K + S shared
    for g in gates:
        torch.testing.assert_close(g.sum(-1), torch.ones(4))
    with pytest.raises(ValueError, match=">= 1"):
        PLELevel(10, 2, 0, 0, [4], shared_output=False)
    with pytest.raises(ValueError, match="ple_levels"):
        PLE(10, 2, 0, 1, 1, [4])
