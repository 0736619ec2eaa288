"""The training loop: learning, schedule, early stopping, checkpoints that resume exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from recsys.data.prepared import PreparedDataset
from recsys.models.dlrm import DLRM
from recsys.models.multitask import MultiTaskRanker
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.train.checkpoint import list_checkpoints
from recsys.train.evaluation import evaluate
from recsys.train.run import seed_everything
from recsys.train.schedule import ScheduleConfig, lr_factor
from recsys.train.trainer import (
    CheckpointConfig,
    EarlyStoppingConfig,
    Trainer,
    TrainerConfig,
)

from ..conftest import CrashingLoader, ranking

SPARSE_OPT = {"type": "rowwise_adagrad", "lr": 0.05}


def make_dlrm(ds: PreparedDataset, fused: bool = True) -> DLRM:
    seed_everything(0)
    tables = embedding_tables(ds.spec, EmbeddingConfig(dim=8))
    emb = build_embeddings(tables, fused=fused, optimizer=SPARSE_OPT if fused else None)
    return DLRM(ds.spec, emb, bottom_mlp=[16, 8], top_mlp=[16], dropout=0.1)


def adam(params):
    return torch.optim.Adam(params, lr=3e-3)


def adagrad(params):
    return torch.optim.Adagrad(params, lr=0.05)


def loaders(ds: PreparedDataset, cfg: TrainerConfig, seed: int = 0):
    train = ds.loader("train", cfg.batch_size, shuffle=True, seed=seed, prefetch=1)
    valid = ds.loader("valid", cfg.eval_batch_size)
    return train, valid


def test_training_beats_chance_and_untrained(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset)
    before = evaluate(model, toy_dataset.loader("test", 4096), toy_dataset.spec.labels)
    cfg = TrainerConfig(batch_size=128, eval_batch_size=4096, max_epochs=4, progress=False)
    trainer = Trainer(
        model, cfg, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=adam
    )
    result = trainer.fit(loaders(toy_dataset, cfg)[0])
    after = evaluate(model, toy_dataset.loader("test", 4096), toy_dataset.spec.labels)
    assert after["mean_auc"] > 0.7
    assert after["mean_auc"] > before["mean_auc"] + 0.1
    assert result.examples_per_sec > 0
    assert result.state.epoch == 4 or result.state.stopped_early


def test_non_fused_embeddings_train_with_a_sparse_optimizer(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset, fused=False)
    cfg = TrainerConfig(batch_size=128, max_epochs=2, progress=False)
    with pytest.raises(ValueError, match="sparse optimizer"):
        Trainer(
            model, cfg, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=adam
        )
    trainer = Trainer(
        model,
        cfg,
        task=ranking(toy_dataset.spec.labels, ds=toy_dataset),
        dense_optimizer=adam,
        sparse_optimizer=adagrad,
    )
    trainer.fit(loaders(toy_dataset, cfg)[0])
    after = evaluate(model, toy_dataset.loader("test", 4096), toy_dataset.spec.labels)
    assert after["mean_auc"] > 0.65


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_checkpoint_resume_gives_the_same_continuation(
    toy_dataset: PreparedDataset, tmp_path: Path
) -> None:
    base = dict(
        batch_size=100,
        eval_batch_size=4096,
        max_epochs=2,
        eval_every_steps=17,
        progress=False,
        schedule=ScheduleConfig(warmup_steps=5, decay="cosine"),
        early_stopping=EarlyStoppingConfig(enabled=False),
    )
    # Uninterrupted run.
    model_a = make_dlrm(toy_dataset)
    cfg_a = TrainerConfig(**base)
    ta = Trainer(
        model_a, cfg_a, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=adam
    )
    ta.fit(loaders(toy_dataset, cfg_a)[0])
    total = ta.state.step
    # A run that crashes while fetching batch 31 (mid-epoch), checkpointing every 10 steps.
    model_b = make_dlrm(toy_dataset)
    cfg_b = TrainerConfig(**base, checkpoint=CheckpointConfig(every_steps=10))
    tb = Trainer(
        model_b,
        cfg_b,
        task=ranking(toy_dataset.spec.labels, ds=toy_dataset),
        dense_optimizer=adam,
        checkpoint_dir=tmp_path,
    )
    train = loaders(toy_dataset, cfg_b)[0]
    with pytest.raises(RuntimeError, match="crash"):
        tb.fit(CrashingLoader(train, after=30))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000020.pt", "step-00000030.pt"]
    torch.manual_seed(123)  # disturb the RNG: resume must restore it
    model_c = make_dlrm(toy_dataset)
    cfg_c = TrainerConfig(**base, checkpoint=CheckpointConfig(resume="latest"))
    tc = Trainer(
        model_c,
        cfg_c,
        task=ranking(toy_dataset.spec.labels, ds=toy_dataset),
        dense_optimizer=adam,
        checkpoint_dir=tmp_path,
    )
    tc.fit(loaders(toy_dataset, cfg_c)[0])
    assert tc.state.step == total
    pa, pc = _params(model_a), _params(model_c)
    assert pa.keys() == pc.keys()
    for key in pa:
        assert torch.equal(pa[key], pc[key]), key
    assert [h["metric"] for h in ta.state.history] == [h["metric"] for h in tc.state.history]


def test_resume_latest_without_checkpoint_is_a_clear_error(
    toy_dataset: PreparedDataset, tmp_path: Path
) -> None:
    cfg = TrainerConfig(
        batch_size=100, progress=False, checkpoint=CheckpointConfig(resume="latest")
    )
    trainer = Trainer(
        make_dlrm(toy_dataset),
        cfg,
        task=ranking(toy_dataset.spec.labels, ds=toy_dataset),
        dense_optimizer=adam,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trainer.fit(loaders(toy_dataset, cfg)[0])


def test_early_stopping_stops_and_restores_best(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset)
    # A learning rate this high overfits quickly; patience 1 must stop before 20 epochs.
    cfg = TrainerConfig(
        batch_size=64,
        max_epochs=20,
        progress=False,
        early_stopping=EarlyStoppingConfig(patience=1),
    )
    trainer = Trainer(
        model,
        cfg,
        task=ranking(toy_dataset.spec.labels, ds=toy_dataset),
        dense_optimizer=lambda p: torch.optim.Adam(p, lr=3e-2),
    )
    result = trainer.fit(loaders(toy_dataset, cfg)[0])
    assert result.state.stopped_early
    assert result.state.epoch < 20
    restored = evaluate(model, toy_dataset.loader("valid", 4096), toy_dataset.spec.labels)
    assert restored["mean_auc"] == pytest.approx(result.state.best_metric, abs=1e-9)
    assert result.best_valid is not None
    assert result.best_valid["mean_auc"] == pytest.approx(result.state.best_metric)


def test_schedule_warmup_and_decays() -> None:
    cfg = ScheduleConfig(warmup_steps=4, decay="linear", min_lr_ratio=0.1)
    factors = [lr_factor(cfg, s, 14) for s in range(14)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[-1] == pytest.approx(1.0 - 0.9 * 9 / 10)
    cos = ScheduleConfig(decay="cosine", decay_steps=10)
    assert lr_factor(cos, 0, None) == 1.0
    assert lr_factor(cos, 5, None) == pytest.approx(0.5)
    assert lr_factor(cos, 10, None) == pytest.approx(0.0, abs=1e-12)
    exp = ScheduleConfig(decay="exponential", decay_steps=3, gamma=0.5)
    assert [lr_factor(exp, s, None) for s in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="decay"):
        ScheduleConfig(decay="step")


def test_lr_schedule_reaches_the_fused_optimizer(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset)
    cfg = TrainerConfig(
        batch_size=500,
        max_steps=3,
        progress=False,
        schedule=ScheduleConfig(warmup_steps=10),
    )
    trainer = Trainer(
        model, cfg, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=adam
    )
    trainer.fit(loaders(toy_dataset, cfg)[0])
    fused_lr = trainer.fused[0].param_groups[0]["lr"]
    assert fused_lr == pytest.approx(SPARSE_OPT["lr"] * 3 / 10)
    assert trainer.optimizers["dense"].param_groups[0]["lr"] == pytest.approx(3e-3 * 3 / 10)


def test_gradient_clipping_bounds_the_dense_gradient_norm(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset)
    norms: list[float] = []

    def spy(params):
        opt = torch.optim.SGD(params, lr=0.0)
        original = opt.step

        def step(*a, **k):
            grads = [p.grad.norm() for p in opt.param_groups[0]["params"] if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))
            return original(*a, **k)

        opt.step = step
        return opt

    cfg = TrainerConfig(batch_size=200, max_steps=5, grad_clip_norm=1e-3, progress=False)
    Trainer(
        model, cfg, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=spy
    ).fit(loaders(toy_dataset, cfg)[0])
    assert len(norms) == 5 and max(norms) <= 1e-3 * (1 + 1e-4)


def test_multitask_loss_weights_and_bad_settings(toy_dataset: PreparedDataset) -> None:
    seed_everything(0)
    emb = build_embeddings(
        embedding_tables(toy_dataset.spec, EmbeddingConfig(dim=8)), fused=True, optimizer=SPARSE_OPT
    )
    model = MultiTaskRanker(toy_dataset.spec, emb, num_experts=2, expert_mlp=[16], tower_mlp=[8])
    with pytest.raises(ValueError, match="unknown tasks"):
        ranking(toy_dataset.spec.labels, ds=toy_dataset, loss_weights={"clik": 1.0})
    with pytest.raises(ValueError, match="batch_size"):
        TrainerConfig(batch_size=0)
    cfg = TrainerConfig(batch_size=256, max_steps=10, progress=False)
    task = ranking(toy_dataset.spec.labels, ds=toy_dataset, loss_weights={"like": 0.0})
    result = Trainer(model, cfg, task=task, dense_optimizer=adam).fit(loaders(toy_dataset, cfg)[0])
    assert result.state.step == 10 and math.isfinite(result.best_valid["mean_auc"])


def test_bf16_autocast_trains_and_settings_are_checked(toy_dataset: PreparedDataset) -> None:
    model = make_dlrm(toy_dataset)
    cfg = TrainerConfig(batch_size=128, max_epochs=3, precision="bf16", progress=False)
    Trainer(
        model, cfg, task=ranking(toy_dataset.spec.labels, ds=toy_dataset), dense_optimizer=adam
    ).fit(loaders(toy_dataset, cfg)[0])
    after = evaluate(model, toy_dataset.loader("test", 4096), toy_dataset.spec.labels)
    assert after["mean_auc"] > 0.7
    with pytest.raises(ValueError, match="precision"):
        TrainerConfig(precision="fp8")
    with pytest.raises(ValueError, match="device"):
        TrainerConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            TrainerConfig(device="cuda")
