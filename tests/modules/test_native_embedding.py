"""NativeFusedEmbeddingBagCollection: fbgemm's fused optimizers in plain PyTorch ops."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
import torchrec.optim as trec_optim
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim.fused import FusedOptimizerModule
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from recsys.data.prepared import PreparedDataset
from recsys.models.dlrm import DLRM
from recsys.modules.embedding import (
    EmbeddingConfig,
    build_embeddings,
    embedding_tables,
    is_embedding_module,
    split_parameters,
)
from recsys.modules.native_embedding import NativeFusedEmbeddingBagCollection
from recsys.train.checkpoint import list_checkpoints
from recsys.train.run import seed_everything
from recsys.train.schedule import ScheduleConfig
from recsys.train.trainer import CheckpointConfig, EarlyStoppingConfig, Trainer, TrainerConfig

from ..conftest import CrashingLoader, ranking

SUM, MEAN = PoolingType.SUM, PoolingType.MEAN
FBGEMM_OPTIMIZERS = {
    "rowwise_adagrad": trec_optim.RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}


def ones(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.long)


def table(name: str, rows: int, dim: int, pooling: PoolingType = SUM) -> EmbeddingBagConfig:
    return EmbeddingBagConfig(
        name=name,
        num_embeddings=rows,
        embedding_dim=dim,
        feature_names=[f"f_{name}"],
        pooling=pooling,
    )


# Single-valued features, one dim.
SINGLE = [table("a", 50, 8), table("b", 20, 8), table("c", 7, 8, MEAN)]
# Multi-hot (0..3 ids per bag, some bags empty), sum and mean, dims 8 / 16 interleaved
# (pooling kept adjacent: fbgemm's fused collection mislabels interleaved poolings).
MIXED = [table("a", 30, 8), table("b", 40, 16), table("c", 12, 8, MEAN), table("d", 9, 16, MEAN)]
# Groups whose tables all pool the same way (embedding_bag's own sum / mean modes).
SAME_POOLING = [
    table("a", 30, 8),
    table("b", 40, 8),
    table("c", 12, 4, MEAN),
    table("d", 9, 4, MEAN),
]


def kjt_for(
    tables: list[EmbeddingBagConfig], batch: int, g: torch.Generator, multi: bool
) -> KeyedJaggedTensor:
    lengths = [
        torch.randint(0, 4, (batch,), generator=g) if multi else torch.ones(batch, dtype=torch.long)
        for _ in tables
    ]
    values = [
        torch.randint(0, t.num_embeddings, (int(n.sum()),), generator=g)
        for t, n in zip(tables, lengths)
    ]
    keys = [t.feature_names[0] for t in tables]
    return KeyedJaggedTensor.from_lengths_sync(keys, torch.cat(values), torch.cat(lengths))


def native(tables: list[EmbeddingBagConfig], kind: str = "rowwise_adagrad", **opts):
    return NativeFusedEmbeddingBagCollection(tables, {"type": kind, "lr": 0.1, **opts})


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def train_steps(module, tables, steps: int, seed: int, multi: bool, batch: int = 16) -> list:
    """Runs ``steps`` forward/backward passes with random upstream gradients; returns outputs."""
    g = torch.Generator().manual_seed(seed)
    outs = []
    for _ in range(steps):
        kt = module(kjt_for(tables, batch, g, multi))
        upstream = torch.randn(kt.values().shape, generator=g)
        kt.values().backward(upstream)
        outs.append((kt.keys(), kt.values().detach().clone()))
    return outs


# ---------------------------------------------------------------- equivalence with fbgemm


@pytest.mark.parametrize(
    ("tables", "multi", "kind"),
    [
        (SINGLE, False, "rowwise_adagrad"),
        (MIXED, True, "rowwise_adagrad"),
        (SAME_POOLING, True, "rowwise_adagrad"),
        (MIXED, True, "adagrad"),
        (MIXED, True, "sgd"),
    ],
    ids=[
        "single-rowwise",
        "multihot-mixed-dims-rowwise",
        "multihot-same-pooling-rowwise",
        "multihot-adagrad",
        "multihot-sgd",
    ],
)
def test_matches_fbgemm_fused_collection(tables, multi: bool, kind: str) -> None:
    torch.manual_seed(0)
    ours = native(tables, kind, eps=1e-6)
    ref = FusedEmbeddingBagCollection(
        tables=tables,
        optimizer_type=FBGEMM_OPTIMIZERS[kind],
        optimizer_kwargs={"lr": 0.1, "eps": 1e-6},
    )
    ref.load_state_dict(ours.state_dict())
    ours_out = train_steps(ours, tables, steps=6, seed=1, multi=multi)
    ref_out = train_steps(ref, tables, steps=6, seed=1, multi=multi)
    for (keys, a), (ref_keys, b) in zip(ours_out, ref_out):
        assert keys == ref_keys
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    wa, wb = weights(ours), weights(ref)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-5)
    # Optimizer state: the same keys and shapes as fbgemm's (checkpoints load across).
    sa = ours.fused_optimizer().state_dict()["state"]
    sb = ref.fused_optimizer().state_dict()["state"]
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].keys() == sb[name].keys()
        for key in sa[name]:
            torch.testing.assert_close(sa[name][key], sb[name][key], atol=1e-5, rtol=1e-5)
    assert all(p.grad is None for p in ours.parameters())


def test_rowwise_adagrad_rule_with_weight_decay_by_hand() -> None:
    """Duplicates are summed, mean bags scaled by 1/len, L2 decay added, then the row rule."""
    tables = [table("a", 5, 4, MEAN)]
    lr, eps, wd = 0.3, 1e-8, 0.01
    ebc = native(tables, lr=lr, eps=eps, weight_decay=wd)
    w0 = ebc.embedding_bags["a"].weight.detach().clone()
    kjt = KeyedJaggedTensor.from_lengths_sync(
        ["f_a"], torch.tensor([1, 1, 3, 1]), torch.tensor([3, 0, 1])
    )
    upstream = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], [-1.0, 0.0, 1.0, 2.0]])
    ebc(kjt).values().backward(upstream)
    w1, m1 = w0.clone(), torch.zeros(5)
    grads = {1: 2 / 3 * upstream[0] + upstream[2], 3: upstream[0] / 3}
    for row, g in grads.items():
        g = g + wd * w0[row]
        m1[row] += (g * g).mean()
        w1[row] -= lr * g / (m1[row].sqrt() + eps)
    torch.testing.assert_close(ebc.embedding_bags["a"].weight.detach(), w1)
    state = ebc.fused_optimizer().state_dict()["state"]["a.weight"]["a.weight.momentum_1"]
    torch.testing.assert_close(state, m1)


# ---------------------------------------------------------------- forward


def test_forward_equals_torchrec_embedding_bag_collection() -> None:
    torch.manual_seed(0)
    ours = native(MIXED)
    plain = EmbeddingBagCollection(tables=MIXED)
    plain.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(3)
    kjt = kjt_for(MIXED, 9, g, multi=True)
    assert (kjt.lengths() == 0).any()
    a, b = ours(kjt), plain(kjt)
    assert a.keys() == b.keys() == ["f_a", "f_b", "f_c", "f_d"]
    assert a.length_per_key() == [8, 16, 8, 16]
    torch.testing.assert_close(a.values(), b.values())
    # Keys in another order and an extra key: looked up by name.
    jts = kjt.to_dict()
    extra = JaggedTensor(values=torch.arange(9), lengths=torch.ones(9, dtype=torch.long))
    order = ["f_d", "x", "f_b", "f_a", "f_c"]
    shuffled = KeyedJaggedTensor.from_jt_dict({k: jts.get(k, extra) for k in order})
    torch.testing.assert_close(ours(shuffled).values(), b.values())
    with torch.no_grad():
        torch.testing.assert_close(ours(kjt).values(), b.values())


def test_single_valued_forward_and_shared_feature() -> None:
    tables = [
        EmbeddingBagConfig(name="u", num_embeddings=10, embedding_dim=4, feature_names=["f"]),
        EmbeddingBagConfig(name="v", num_embeddings=10, embedding_dim=4, feature_names=["f"]),
    ]
    ours = native(tables)
    plain = EmbeddingBagCollection(tables=tables)
    plain.load_state_dict(ours.state_dict())
    kjt = KeyedJaggedTensor.from_lengths_sync(["f"], torch.tensor([3, 9, 0]), ones(3))
    a, b = ours(kjt), plain(kjt)
    assert a.keys() == b.keys() == ["f@u", "f@v"]
    torch.testing.assert_close(a.values(), b.values())


def test_bad_ids_and_inputs_are_clear_errors() -> None:
    ours = native(SINGLE)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        ["f_a", "f_b", "f_c"], torch.tensor([0, 20, 1]), ones(3)
    )
    with pytest.raises(ValueError, match=r"feature 'f_b': id 20 is outside \[0, 20\)"):
        ours(kjt)
    multi = KeyedJaggedTensor.from_lengths_sync(
        ["f_a", "f_b", "f_c"], torch.tensor([0, 1, -1]), torch.tensor([2, 0, 1])
    )
    with pytest.raises(ValueError, match=r"feature 'f_c': id -1"):
        ours(multi)
    with pytest.raises(ValueError, match=r"lacks features \['f_c'\]"):
        ours(KeyedJaggedTensor.from_lengths_sync(["f_a", "f_b"], torch.tensor([0, 1]), ones(2)))
    with pytest.raises(ValueError, match="optimizer\\['type'\\]"):
        NativeFusedEmbeddingBagCollection(SINGLE, {"type": "adam"})
    with pytest.raises(ValueError, match="unknown optimizer keys"):
        NativeFusedEmbeddingBagCollection(SINGLE, {"type": "sgd", "momentum": 0.9})
    with pytest.raises(ValueError, match="CPU only"):
        NativeFusedEmbeddingBagCollection(SINGLE, {"type": "sgd"}, device="meta")


# ---------------------------------------------------------------- optimizer interface


def test_lr_in_param_groups_takes_effect_and_grads_stay_none() -> None:
    torch.manual_seed(0)
    a = native(MIXED, lr=0.1)
    b = native(MIXED, lr=0.7)
    b.load_state_dict(a.state_dict())
    opt = b.fused_optimizer()
    assert isinstance(b, FusedOptimizerModule) and len(opt.param_groups) == 1
    opt.param_groups[0]["lr"] = 0.1
    opt.step()
    opt.zero_grad()
    train_steps(a, MIXED, steps=2, seed=5, multi=True)
    train_steps(b, MIXED, steps=2, seed=5, multi=True)
    for k, v in weights(a).items():
        assert torch.equal(v, weights(b)[k]), k
    opt.param_groups[0]["lr"] = 0.0
    before = weights(b)
    train_steps(b, MIXED, steps=1, seed=6, multi=True)
    assert all(torch.equal(before[k], v) for k, v in weights(b).items())
    assert all(p.grad is None for p in b.parameters())
    assert all(g.handle.grad is None for g in b._groups)


def test_state_dicts_resume_identically() -> None:
    torch.manual_seed(0)
    a = native(MIXED)
    train_steps(a, MIXED, steps=3, seed=7, multi=True)
    buffer = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": a.fused_optimizer().state_dict()}, buffer)
    train_steps(a, MIXED, steps=3, seed=8, multi=True)

    torch.manual_seed(123)
    b = native(MIXED)
    buffer.seek(0)
    saved = torch.load(buffer)
    b.load_state_dict(saved["model"])
    b.fused_optimizer().load_state_dict(saved["opt"])
    train_steps(b, MIXED, steps=3, seed=8, multi=True)
    for k, v in weights(a).items():
        assert torch.equal(v, weights(b)[k]), k
    sa = a.fused_optimizer().state_dict()["state"]
    sb = b.fused_optimizer().state_dict()["state"]
    for name in sa:
        for key in sa[name]:
            assert torch.equal(sa[name][key], sb[name][key]), key


def test_parameters_are_sparse_and_aliasing_is_checked() -> None:
    ebc = native(SINGLE)
    model = torch.nn.Sequential(ebc, torch.nn.Linear(2, 2))
    sparse, dense = split_parameters(model)
    assert is_embedding_module(ebc)
    assert {id(p) for p in sparse} == {id(p) for p in ebc.parameters()}
    assert len(sparse) == 3 and len(dense) == 2
    assert [n for n, _ in ebc.named_parameters()] == [
        "embedding_bags.a.weight",
        "embedding_bags.b.weight",
        "embedding_bags.c.weight",
    ]
    broken = copy.deepcopy(ebc)
    broken.load_state_dict(ebc.state_dict(), assign=True)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        ["f_a", "f_b", "f_c"], torch.zeros(3, dtype=torch.long), ones(3)
    )
    with pytest.raises(RuntimeError, match="no longer alias"):
        broken(kjt)


def test_build_embeddings_kernel_option() -> None:
    tables = [table("a", 10, 6), table("b", 4, 1, MEAN)]  # not multiples of 4: fine natively
    opt = {"type": "rowwise_adagrad", "lr": 0.05}
    ebc = build_embeddings(tables, fused=True, optimizer=opt, kernel="native")
    assert isinstance(ebc, NativeFusedEmbeddingBagCollection)
    plain = build_embeddings(tables, fused=False)
    plain.load_state_dict(ebc.state_dict())
    kjt = kjt_for(tables, 5, torch.Generator().manual_seed(0), multi=True)
    torch.testing.assert_close(ebc(kjt).values(), plain(kjt).values())
    before = weights(ebc)
    ebc(kjt).values().sum().backward()
    assert all(not torch.equal(before[k], v) for k, v in weights(ebc).items())
    with pytest.raises(ValueError, match=r"kernel must be one of \['fbgemm', 'native'\]"):
        build_embeddings(tables, fused=True, optimizer=opt, kernel="triton")
    with pytest.raises(ValueError, match="kernel='native' needs"):
        build_embeddings(tables, fused=True, optimizer={"type": "adam"}, kernel="native")
    with pytest.raises(ValueError, match="multiples of 4"):
        build_embeddings(tables, fused=True, optimizer=opt)


# ---------------------------------------------------------------- inside the trainer


def make_dlrm(ds: PreparedDataset) -> DLRM:
    seed_everything(0)
    tables = embedding_tables(ds.spec, EmbeddingConfig(dim=8))
    emb = build_embeddings(
        tables, fused=True, optimizer={"type": "rowwise_adagrad", "lr": 0.05}, kernel="native"
    )
    return DLRM(ds.spec, emb, bottom_mlp=[16, 8], top_mlp=[16], dropout=0.1)


def adam(params):
    return torch.optim.Adam(params, lr=3e-3)


def loaders(ds: PreparedDataset, batch: int):
    return ds.loader("train", batch, shuffle=True, seed=0, prefetch=1), ds.loader("valid", 4096)


def test_trainer_fits_a_dlrm_on_native_embeddings(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset)
    before = weights(model.embeddings)
    cfg = TrainerConfig(
        batch_size=200,
        max_epochs=2,
        progress=False,
        schedule=ScheduleConfig(warmup_steps=100),
    )
    trainer = Trainer(
        model, cfg, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=adam
    )
    assert trainer.fused == [model.embeddings.fused_optimizer()]
    result = trainer.fit(loaders(toy_dataset, cfg.batch_size)[0])
    assert result.best_valid is not None and result.best_valid["mean_auc"] > 0.6
    steps = trainer.state.step
    assert trainer.fused[0].param_groups[0]["lr"] == pytest.approx(0.05 * steps / 100)
    after = weights(model.embeddings)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.embeddings.parameters())


def test_trainer_checkpoint_resume_is_exact(toy_dataset: PreparedDataset, tmp_path: Path) -> None:
    base = dict(
        batch_size=100,
        max_epochs=2,
        eval_every_steps=17,
        progress=False,
        schedule=ScheduleConfig(warmup_steps=5, decay="cosine"),
        early_stopping=EarlyStoppingConfig(enabled=False),
    )
    labels = toy_dataset.spec.labels
    model_a = make_dlrm(toy_dataset)
    ta = Trainer(
        model_a, TrainerConfig(**base), task=ranking(labels, ds=toy_dataset), dense_optimizer=adam
    )
    ta.fit(loaders(toy_dataset, 100)[0])

    model_b = make_dlrm(toy_dataset)
    cfg_b = TrainerConfig(**base, checkpoint=CheckpointConfig(every_steps=10))
    tb = Trainer(
        model_b,
        cfg_b,
        task=ranking(labels, ds=toy_dataset),
        dense_optimizer=adam,
        checkpoint_dir=tmp_path,
    )
    train = loaders(toy_dataset, 100)[0]
    with pytest.raises(RuntimeError, match="crash"):
        tb.fit(CrashingLoader(train, after=30))
    assert list_checkpoints(tmp_path)[-1].name == "step-00000030.pt"

    torch.manual_seed(123)
    model_c = make_dlrm(toy_dataset)
    cfg_c = TrainerConfig(**base, checkpoint=CheckpointConfig(resume="latest"))
    tc = Trainer(
        model_c,
        cfg_c,
        task=ranking(labels, ds=toy_dataset),
        dense_optimizer=adam,
        checkpoint_dir=tmp_path,
    )
    tc.fit(loaders(toy_dataset, 100)[0])
    assert tc.state.step == ta.state.step
    pa, pc = weights(model_a), weights(model_c)
    assert pa.keys() == pc.keys()
    for key in pa:
        assert torch.equal(pa[key], pc[key]), key
    sa = ta.fused[0].state_dict()["state"]
    sc = tc.fused[0].state_dict()["state"]
    for name in sa:
        for key in sa[name]:
            assert torch.equal(sa[name][key], sc[name][key]), key
