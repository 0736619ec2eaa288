"""Tests of recsys.models: shapes, gradients, learning, validation, the registry."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models import MODELS, UnknownModelError, model_class
from recsys.models.dcn import DCNv2
from recsys.models.dlrm import DLRM
from recsys.models.logreg import LogisticRegression
from recsys.models.multitask import MultiTaskRanker
from recsys.modules.embedding import (
    EmbeddingConfig,
    build_embeddings,
    embedding_tables,
    split_parameters,
)
from recsys.types import FeatureSpec, SparseFeature

from ..conftest import random_kjt

SPARSE = (
    SparseFeature("user", 40),
    SparseFeature("item", 50),
    SparseFeature("tags", 16, multi_hot=True, pooling="mean"),
)
SPEC_DENSE = FeatureSpec(dense=("d0", "d1", "d2"), sparse=SPARSE, labels=("click", "like"))
SPEC_NO_DENSE = FeatureSpec(dense=(), sparse=SPARSE, labels=("rating",))  # MovieLens-like

SMALL: dict[str, dict[str, Any]] = {
    "dlrm": {"bottom_mlp": [16, 8], "top_mlp": [16]},
    "dcn": {"cross_layers": 2, "low_rank": 4, "deep_mlp": [16]},
    "dcn_parallel_full": {
        "cross_layers": 2,
        "low_rank": None,
        "structure": "parallel",
        "deep_mlp": [16],
    },
    "mmoe": {"experts": "mmoe", "num_experts": 3, "expert_mlp": [16, 8], "tower_mlp": [8]},
    "ple": {
        "experts": "ple",
        "expert_mlp": [16, 8],
        "tower_mlp": [8],
        "ple_levels": 2,
        "dense_mlp": [8],
    },
    "logreg": {},
}
CLASSES = {
    "dlrm": DLRM,
    "dcn": DCNv2,
    "dcn_parallel_full": DCNv2,
    "mmoe": MultiTaskRanker,
    "ple": MultiTaskRanker,
    "logreg": LogisticRegression,
}
RWA = {"type": "rowwise_adagrad", "lr": 0.1}


make_kjt = random_kjt


def build(
    name: str, spec: FeatureSpec, *, fused: bool = False, seed: int = 0, **override: Any
) -> nn.Module:
    torch.manual_seed(seed)
    dim = spec.num_tasks if name == "logreg" else 8
    tables = embedding_tables(spec, EmbeddingConfig(dim=dim))
    embeddings = build_embeddings(tables, fused=fused, optimizer=RWA)
    return CLASSES[name](spec, embeddings, **{**SMALL[name], **override})


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("spec", [SPEC_DENSE, SPEC_NO_DENSE], ids=["dense", "no_dense"])
def test_shapes_and_gradient_flow(name: str, spec: FeatureSpec) -> None:
    g = torch.Generator().manual_seed(1)
    model = build(name, spec)
    dense = torch.randn(6, spec.num_dense, generator=g)
    out = model(dense, make_kjt(spec, 6, g))
    assert out.shape == (6, spec.num_tasks) and out.dtype == torch.float32
    assert model.task_names == spec.labels
    out.sum().backward()
    sparse, dense_params = split_parameters(model)
    assert len(sparse) == 3
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sparse)
    # every dense parameter gets a gradient (gates, experts, cross layers, MLPs, heads)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert len(dense_params) > 0


@pytest.mark.parametrize("name", ["dlrm", "dcn", "mmoe"])
def test_batch_of_one_and_empty_multi_hot_rows(name: str) -> None:
    model = build(name, SPEC_DENSE).eval()
    kjt = KeyedJaggedTensor.from_lengths_sync(
        ["user", "item", "tags"], torch.tensor([3, 7]), torch.tensor([1, 1, 0])
    )
    assert model(torch.zeros(1, 3), kjt).shape == (1, 2)


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]:
    """Separable problem: click = item is even; like = user < 20 xor d0 > 0."""
    g = torch.Generator().manual_seed(seed)
    kjt = make_kjt(SPEC_DENSE, n, g)
    feats = kjt.to_dict()
    user, item = feats["user"].values(), feats["item"].values()
    dense = torch.randn(n, 3, generator=g)
    click = (item % 2 == 0).float()
    like = ((user < 20) ^ (dense[:, 0] > 0)).float()
    return dense, kjt, torch.stack([click, like], dim=1)


@pytest.mark.parametrize("name", ["dlrm", "dcn", "mmoe", "ple", "logreg"])
def test_learns_a_small_separable_problem(name: str) -> None:
    dense, kjt, labels = _synthetic(512, seed=2)
    fused = name != "logreg"  # 2-dim tables: fbgemm's fused kernels need dims % 4 == 0
    model = build(name, SPEC_DENSE, fused=fused)
    sparse, dense_params = split_parameters(model)
    params = dense_params if fused else dense_params + sparse
    opt = torch.optim.Adam(params, lr=0.02 if fused else 0.1)
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(model(dense, kjt), labels)
        loss.backward()  # fused embeddings are updated here
        opt.step()
        losses.append(loss.item())
    if name == "logreg":
        # a linear model cannot fit the xor task; it must still fit the parity of item ids
        click_loss = loss_fn(model(dense, kjt)[:, 0], labels[:, 0])
        assert click_loss.item() < 0.35, losses[::10]
    else:
        assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_fused_embeddings_are_updated_by_backward() -> None:
    model = build("dlrm", SPEC_DENSE, fused=True)
    dense, kjt, labels = _synthetic(32, seed=5)
    w = model.embeddings.embedding_bags["t_item"].weight
    before = w.detach().clone()
    nn.functional.binary_cross_entropy_with_logits(model(dense, kjt), labels).backward()
    assert not torch.equal(before, w.detach())


def test_fused_and_plain_models_agree() -> None:
    plain = build("dcn", SPEC_NO_DENSE, seed=3)
    fused = build("dcn", SPEC_NO_DENSE, fused=True, seed=3)
    fused.load_state_dict(plain.state_dict())
    kjt = make_kjt(SPEC_NO_DENSE, 8, torch.Generator().manual_seed(0))
    x = torch.zeros(8, 0)
    torch.testing.assert_close(plain(x, kjt), fused(x, kjt))


def test_dlrm_top_input_layout() -> None:
    model = build("dlrm", SPEC_DENSE, top_mlp=[])
    assert model.interaction.out_features == 6  # 4 vectors -> 6 pairs
    assert model.head.in_features == 8 + 6
    selfish = build("dlrm", SPEC_NO_DENSE, interaction_self=True)
    assert selfish.interaction.out_features == 6  # 3 vectors with self -> 6


def test_dlrm_validation() -> None:
    torch.manual_seed(0)
    tables = embedding_tables(SPEC_DENSE, EmbeddingConfig(dim=8, per_table={"tags": {"dim": 4}}))
    emb = build_embeddings(tables, fused=False)
    with pytest.raises(ValueError, match=r"bottom_mlp\[-1\] = 8.*t_tags \(dim 4\)"):
        DLRM(SPEC_DENSE, emb, bottom_mlp=[16, 8])
    with pytest.raises(ValueError, match=r"t_tags \(dim 4\)"):
        DLRM(SPEC_NO_DENSE, emb)
    with pytest.raises(ValueError, match="non-empty bottom_mlp"):
        ok = build_embeddings(embedding_tables(SPEC_DENSE, EmbeddingConfig(dim=8)), fused=False)
        DLRM(SPEC_DENSE, ok, bottom_mlp=[])
    one = FeatureSpec(dense=(), sparse=(SparseFeature("item", 5),), labels=("y",))
    one_emb = build_embeddings(embedding_tables(one, EmbeddingConfig(dim=4)), fused=False)
    with pytest.raises(ValueError, match="interaction_self"):
        DLRM(one, one_emb)
    assert DLRM(one, one_emb, interaction_self=True).interaction.out_features == 1


def test_embeddings_must_match_the_spec() -> None:
    other = FeatureSpec(dense=(), sparse=(SparseFeature("user", 40),), labels=("y",))
    emb = build_embeddings(embedding_tables(other, EmbeddingConfig(dim=8)), fused=False)
    with pytest.raises(ValueError, match=r"features without a table \['item', 'tags'\]"):
        DCNv2(SPEC_DENSE, emb)


@pytest.mark.parametrize("name", ["dlrm", "dcn", "mmoe"])
def test_rankers_check_their_inputs(name: str) -> None:
    model_name = CLASSES[name].__name__
    no_sparse = FeatureSpec(dense=("d0",), sparse=(), labels=("y",))
    with pytest.raises(ValueError, match=f"{model_name} needs at least one sparse feature"):
        CLASSES[name](no_sparse, build_embeddings([], fused=False), **SMALL[name])
    model = build(name, SPEC_DENSE)
    with pytest.raises(ValueError, match=rf"{model_name} expects dense B x 3, got \(4, 2\)"):
        model(torch.zeros(4, 2), make_kjt(SPEC_DENSE, 4))


def test_dcn_validation() -> None:
    with pytest.raises(ValueError, match="structure"):
        build("dcn", SPEC_DENSE, structure="zigzag")
    with pytest.raises(ValueError, match="non-empty deep_mlp"):
        build("dcn", SPEC_DENSE, structure="parallel", deep_mlp=[])
    with pytest.raises(ValueError, match="low_rank"):
        build("dcn", SPEC_DENSE, low_rank=0)
    model = build("dcn", SPEC_DENSE, deep_mlp=[], cross_layers=1)  # stacked: cross -> head
    assert model.head.in_features == 3 + 3 * 8


def test_multitask_validation_and_single_task() -> None:
    with pytest.raises(ValueError, match="experts"):
        build("mmoe", SPEC_DENSE, experts="moe")
    with pytest.raises(ValueError, match="num_experts"):
        build("mmoe", SPEC_DENSE, num_experts=0)
    one = build("ple", SPEC_NO_DENSE)  # T == 1, dense_mlp ignored without dense features
    assert one.dense_mlp is None and len(one.towers) == 1


def test_logreg_validation() -> None:
    emb = build_embeddings(embedding_tables(SPEC_DENSE, EmbeddingConfig(dim=1)), fused=False)
    with pytest.raises(ValueError, match=r"number of tasks \(2\).*t_user \(dim 1\)"):
        LogisticRegression(SPEC_DENSE, emb)


def test_logreg_is_linear() -> None:
    model = build("logreg", SPEC_NO_DENSE)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        ["user", "item", "tags"], torch.tensor([3, 7, 1, 5]), torch.tensor([1, 1, 2])
    )
    bags = model.embeddings.embedding_bags
    expected = (
        model.bias
        + bags["t_user"].weight[3]
        + bags["t_item"].weight[7]
        + (bags["t_tags"].weight[1] + bags["t_tags"].weight[5]) / 2  # mean pooling
    )
    torch.testing.assert_close(model(torch.zeros(1, 0), kjt)[0], expected)


def test_registry() -> None:
    assert model_class("dlrm") is DLRM
    assert model_class("dcn") is DCNv2
    assert model_class("multitask") is MultiTaskRanker
    assert model_class("logreg") is LogisticRegression
    assert set(MODELS) == {"dlrm", "dcn", "multitask", "logreg"}
    with pytest.raises(UnknownModelError, match=r"known models: .*'dlrm'"):
        model_class("gbdt")
    with pytest.raises(KeyError):
        model_class("gbdt")


def test_importing_the_registry_imports_no_model() -> None:
    code = "import sys, recsys.models; print(sorted(m for m in sys.modules if 'torch' in m \
or m.startswith('recsys.models.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
