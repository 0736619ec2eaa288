"""Every ranker kind on every embedding kind exports with parity: batches of 1, odd and empty
multi-hot lists, the missing (0) and out-of-vocabulary (1) rows, sum and mean pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.export.graph import SparseInput
from recsys.export.manifest import ids_input, lengths_input
from recsys.export.onnx_export import export_ranker, export_tower
from recsys.export.parity import session
from recsys.models.dcn import DCNv2
from recsys.models.dlrm import DLRM
from recsys.models.logreg import LogisticRegression
from recsys.models.multitask import MultiTaskRanker
from recsys.models.two_tower import Tower
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.types import FeatureSpec, SparseFeature

SPEC = FeatureSpec(
    dense=("a", "b", "c"),
    sparse=(
        SparseFeature("user", 40),
        SparseFeature("topic", 7),
        SparseFeature("tags", 30, multi_hot=True, pooling="mean"),
        SparseFeature("genres", 12, multi_hot=True, pooling="sum"),
    ),
    labels=("click", "like"),
)
MULTI = {"tags", "genres"}
KINDS = {
    "plain": {"fused": False},
    "fbgemm": {"fused": True, "kernel": "fbgemm"},
    "native": {"fused": True, "kernel": "native"},
}
MODELS = {
    "dlrm": lambda spec, ebc: DLRM(spec, ebc, bottom_mlp=[8], top_mlp=[16]),
    "dcn": lambda spec, ebc: DCNv2(spec, ebc, cross_layers=2, low_rank=4, deep_mlp=[16]),
    "mmoe": lambda spec, ebc: MultiTaskRanker(spec, ebc, num_experts=2, expert_mlp=[16]),
    "ple": lambda spec, ebc: MultiTaskRanker(spec, ebc, experts="ple", expert_mlp=[16]),
    "logreg": lambda spec, ebc: LogisticRegression(spec, ebc),
}


def _batch(
    rng: np.random.Generator, b: int, multi_lengths: dict[str, list[int]] | None = None
) -> tuple[torch.Tensor, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Dense ``b x 3`` and per-feature ``(ids, lengths)``; ids include rows 0 and 1."""
    bags = {}
    for f in SPEC.sparse:
        if f.multi_hot:
            lens = np.asarray(
                (multi_lengths or {}).get(f.name, rng.integers(0, 5, b)), dtype=np.int32
            )
        else:
            lens = np.ones(b, dtype=np.int32)
        ids = rng.integers(0, f.cardinality, int(lens.sum())).astype(np.int64)
        ids[: min(2, len(ids))] = [0, 1][: min(2, len(ids))]
        bags[f.name] = (ids, lens)
    return torch.from_numpy(rng.normal(size=(b, 3)).astype(np.float32)), bags


def _kjt(bags: dict[str, tuple[np.ndarray, np.ndarray]]) -> KeyedJaggedTensor:
    keys = SPEC.sparse_names
    return KeyedJaggedTensor(
        keys=keys,
        values=torch.from_numpy(np.concatenate([bags[k][0] for k in keys])),
        lengths=torch.from_numpy(np.concatenate([bags[k][1] for k in keys])),
    )


def _feeds(bags: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for k, (ids, lens) in bags.items():
        out[ids_input(k)], out[lengths_input(k)] = ids, lens
    return out


def _cases(rng: np.random.Generator) -> list:
    return [
        _batch(rng, 1),  # a batch of one
        _batch(rng, 1, {"tags": [0], "genres": [0]}),  # one row, empty lists
        _batch(rng, 7, {"tags": [0, 0, 0, 0, 0, 0, 0], "genres": [0] * 7}),  # all empty
        _batch(rng, 5, {"tags": [3, 0, 1, 0, 9], "genres": [0, 2, 0, 0, 11]}),  # trailing
        _batch(rng, 257),
    ]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_ranker_exports_with_parity(kind: str, model_name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    dim, spec = 8, SPEC
    if model_name == "logreg":  # tables of dim T; fbgemm needs dims % 4 == 0: four tasks
        spec = FeatureSpec(SPEC.dense, SPEC.sparse, ("click", "like", "share", "save"))
        dim = spec.num_tasks
    tables = embedding_tables(spec, EmbeddingConfig(dim=dim))
    ebc = build_embeddings(tables, optimizer={"type": "rowwise_adagrad", "lr": 0.1}, **KINDS[kind])
    model = MODELS[model_name](spec, ebc).eval()
    with torch.no_grad():  # train-like perturbation so that the tables are not at init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    features = [SparseInput(f.name, f.cardinality) for f in spec.sparse]
    path = tmp_path / "ranker.onnx"
    model_file, _ = export_ranker(model, features, MULTI, 3, list(spec.labels), path)
    assert [t.name for t in model_file.outputs] == list(spec.labels)
    assert model_file.sparse_features() == spec.sparse_names
    sess = session(str(path))
    for dense, bags in _cases(np.random.default_rng(1)):
        with torch.no_grad():
            eager = torch.sigmoid(model(dense, _kjt(bags))).numpy()
        got = np.stack(sess.run(None, {"dense": dense.numpy(), **_feeds(bags)}), axis=1)
        assert got.shape == eager.shape
        assert np.abs(got - eager).max() <= 1e-5


def test_model_without_dense_features_has_no_dense_input(tmp_path: Path) -> None:
    spec = FeatureSpec((), SPEC.sparse, ("click",))
    ebc = build_embeddings(embedding_tables(spec, EmbeddingConfig(dim=8)), fused=False)
    model = DCNv2(spec, ebc, cross_layers=1, low_rank=None, deep_mlp=[8]).eval()
    features = [SparseInput(f.name, f.cardinality) for f in spec.sparse]
    model_file, _ = export_ranker(model, features, MULTI, 0, ["click"], tmp_path / "r.onnx")
    assert model_file.num_dense() == 0 and "dense" not in [t.name for t in model_file.inputs]
    _, bags = _batch(np.random.default_rng(2), 4)
    with torch.no_grad():
        eager = torch.sigmoid(model(torch.zeros(4, 0), _kjt(bags)))[:, 0].numpy()
    (got,) = session(str(tmp_path / "r.onnx")).run(None, _feeds(bags))
    assert np.abs(got - eager).max() <= 1e-5


def test_tower_exports_unit_vectors(tmp_path: Path) -> None:
    spec = FeatureSpec((), SPEC.sparse, ("click",))
    ebc = build_embeddings(embedding_tables(spec, EmbeddingConfig(dim=8)), fused=False)
    tower = Tower(ebc, 0, [16], 6).eval()
    features = [SparseInput(f.name, f.cardinality) for f in spec.sparse]
    model_file, _ = export_tower(tower, features, MULTI, tmp_path / "t.onnx")
    assert model_file.outputs[0].shape == ("batch", 6)
    sess = session(str(tmp_path / "t.onnx"))
    for _, bags in _cases(np.random.default_rng(3)):
        with torch.no_grad():
            eager = tower(None, _kjt(bags)).numpy()
        (got,) = sess.run(None, _feeds(bags))
        assert np.abs(got - eager).max() <= 1e-5
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_linear_model_on_dense_features_only(tmp_path: Path) -> None:
    spec = FeatureSpec(("a", "b", "c"), (), ("click",))
    ebc = build_embeddings(embedding_tables(spec, EmbeddingConfig(dim=1)), fused=False)
    model = LogisticRegression(spec, ebc).eval()
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
    model_file, _ = export_ranker(model, [], set(), 3, ["click"], tmp_path / "lr.onnx")
    assert [t.name for t in model_file.inputs] == ["dense"]
    dense = torch.randn(6, 3)
    with torch.no_grad():
        eager = torch.sigmoid(model(dense, None))[:, 0].numpy()  # type: ignore[arg-type]
    (got,) = session(str(tmp_path / "lr.onnx")).run(None, {"dense": dense.numpy()})
    assert np.abs(got - eager).max() <= 1e-6
