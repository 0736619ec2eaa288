"""The one training loop, for every task (rankers, the two-tower).

What is trained and how a batch becomes a loss is the task's (:class:`recsys.train.task.Task`);
everything else is here. Embeddings are updated by a sparse optimizer (row-wise Adagrad by
default), fused into the backward pass by FBGEMM's (or our native) table-batched kernel when
the model's embeddings are fused; everything else by a dense optimizer. Both follow one
learning-rate schedule (warm-up, then decay). The loop evaluates every N steps or at the end of
each epoch, stops early on the validation metric, restores the best weights, logs to MLflow,
and writes checkpoints (model, optimizers, loop position, RNGs and the task's own state) that
resume to exactly the same continuation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchrec.optim.fused import FusedOptimizerModule

from recsys.data.progress import Progress
from recsys.modules.embedding import split_parameters
from recsys.train.checkpoint import (
    LoopState,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    loop_state_dict,
    loop_state_from_dict,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from recsys.train.evaluation import headline
from recsys.train.optimizers import OptimizerFactory
from recsys.train.parallel import DistributedConfig
from recsys.train.schedule import ScheduleConfig, lr_factor
from recsys.train.task import BatchSource, Task
from recsys.train.tracking import Tracker, numeric_metrics

log = logging.getLogger(__name__)

__all__ = [
    "BatchSource",
    "CheckpointConfig",
    "EarlyStoppingConfig",
    "FitResult",
    "OptimizerFactory",
    "Trainer",
    "TrainerConfig",
    "resolve_device",
]


@dataclass
class EarlyStoppingConfig:
    """Stop when the validation ``metric`` has not improved for ``patience`` evaluations.

    ``metric`` / ``mode``: ``None`` takes the task's (``auc`` for rankers, ``recall@10`` for
    the two-tower; both ``max``). ``restore_best``: end with the best evaluated weights."""

    enabled: bool = True
    metric: str | None = None
    mode: str | None = None
    patience: int = 3
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass
class CheckpointConfig:
    """Periodic checkpoints. ``resume``: a checkpoint file, or ``latest`` for the newest one."""

    every_steps: int | None = None
    keep_last: int = 2
    resume: str | None = None


@dataclass
class TrainerConfig:
    """Settings of :class:`Trainer`; see the module docstring."""

    batch_size: int = 2048
    eval_batch_size: int = 16384
    max_epochs: int = 1
    max_steps: int | None = None
    eval_every_steps: int | None = None
    grad_clip_norm: float | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    num_threads: int | None = None
    interop_threads: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    progress: bool | None = None
    log_every_steps: int = 50
    prefetch: int = 2
    shuffle: bool = True
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size", "max_epochs", "log_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"trainer.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"trainer.precision must be fp32 or bf16, got {self.precision!r}")
        if self.early_stopping.mode not in (None, "max", "min"):
            raise ValueError(
                f"trainer.early_stopping.mode must be max, min or null, got "
                f"{self.early_stopping.mode!r}"
            )
        resolve_device(self.device)


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` measured."""

    state: LoopState
    best_valid: dict[str, Any] | None
    last_valid: dict[str, Any] | None
    examples_per_sec: float
    wall_seconds: float

    task_stats: dict[str, Any] = field(default_factory=dict)
    #: the learning curves: ``{"train": [{"step", "loss", "lr", "examples_per_sec"}, ...]}``
    #: every ``log_every_steps`` (of this process: a resumed run starts where it resumed),
    #: ``"valid": [{"step", "metric", "valid/<metric>"...}, ...]`` at every evaluation.
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        losses = self.state.epoch_losses
        return {
            "steps": self.state.step,
            "epochs_completed": self.state.epoch,
            "examples": self.state.examples,
            "examples_per_sec": self.examples_per_sec,
            "wall_seconds": self.wall_seconds,
            "train_seconds": self.state.train_seconds,
            "best_step": self.state.best_step,
            "stopped_early": self.state.stopped_early,
            "epoch_losses": list(losses),
            "final_loss": losses[-1] if losses else None,
            **self.task_stats,
        }


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when a GPU is present, else CPU; ``cpu`` and ``cuda[:N]`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name.startswith("cuda"):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"trainer.device={name!r} but no CUDA device is available")
        return torch.device(name)
    raise ValueError(f"trainer.device must be auto, cpu or cuda[:N], got {name!r}")


def apply_thread_settings(num_threads: int | None, interop_threads: int | None) -> None:
    """Sets torch's intra-op (and, once per process, inter-op) thread counts."""
    if num_threads:
        torch.set_num_threads(num_threads)
    if interop_threads:
        try:
            torch.set_num_interop_threads(interop_threads)
        except RuntimeError:  # only settable before the first parallel work in a process
            log.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())


def _dense_groups(model: nn.Module, params: list[nn.Parameter]) -> list[Any]:
    """``params`` as given, or two groups when the model names parameters that take no weight
    decay (``model.no_weight_decay()``, e.g. the two-tower's learned temperature)."""
    names = getattr(model, "no_weight_decay", None)
    skip = {id(p) for p in names()} if callable(names) else set()
    if not skip & {id(p) for p in params}:
        return params
    return [
        {"params": [p for p in params if id(p) not in skip]},
        {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
    ]


class Trainer:
    """Trains ``model`` on ``task`` (see the module docstring).

    Args:
        model: a ranker or a two-tower from ``recsys.models``, on its device.
        config: loop settings.
        task: what the model is trained on and judged by (:class:`~recsys.train.task.Task`).
        dense_optimizer: builds the optimizer for non-embedding parameters.
        sparse_optimizer: builds the optimizer for embedding parameters that are *not* fused
            (fused embeddings carry their own optimizer).
        tracker: MLflow run to log to (optional).
        checkpoint_dir: where periodic checkpoints go (required for ``checkpoint.every_steps``).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        *,
        task: Task,
        dense_optimizer: OptimizerFactory,
        sparse_optimizer: OptimizerFactory | None = None,
        tracker: Tracker | None = None,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.task = task
        self.tracker = tracker
        self.checkpoint_dir = checkpoint_dir
        self.metric = config.early_stopping.metric or task.default_metric
        self.mode = config.early_stopping.mode or task.default_mode
        self.fused, plain_sparse, self.dense_params = self._parameter_roles(model)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        if self.dense_params:
            self.optimizers["dense"] = dense_optimizer(_dense_groups(model, self.dense_params))
        if plain_sparse:
            if sparse_optimizer is None:
                raise ValueError(
                    "the model has non-fused embeddings but no sparse optimizer was given"
                )
            self.optimizers["sparse"] = sparse_optimizer(plain_sparse)
        self._base_lrs = {
            name: [g["lr"] for g in opt.param_groups]
            for name, opt in self._all_optimizers().items()
        }
        self.state = LoopState()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.device = resolve_device(config.device)
        task.to(self.device)
        self._epoch_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self._epoch_batches = 0
        self.train_curve: list[dict[str, Any]] = []

    # -- optimizers and schedule -------------------------------------------------------------
    def _parameter_roles(
        self, model: nn.Module
    ) -> tuple[list[torch.optim.Optimizer], list[nn.Parameter], list[nn.Parameter]]:
        """``(fused optimizers, plain embedding parameters, dense parameters)`` of ``model``:
        fused collections bring their own optimizer (run inside backward), plain embedding
        parameters get the sparse optimizer, the rest the dense one. A sharded model
        (:mod:`recsys.distributed`) finds its roles its own way."""
        sparse_params, dense_params = split_parameters(model)
        fused = [
            m.fused_optimizer() for m in model.modules() if isinstance(m, FusedOptimizerModule)
        ]
        fused_params = {
            id(p)
            for m in model.modules()
            if isinstance(m, FusedOptimizerModule)
            for p in m.parameters()
        }
        plain_sparse = [p for p in sparse_params if id(p) not in fused_params and p.requires_grad]
        return fused, plain_sparse, [p for p in dense_params if p.requires_grad]

    def _after_step(self) -> None:
        """Called after every optimizer step (``state.step`` counts it); nothing by default."""

    def _loss_value(self, loss: torch.Tensor) -> float:
        """The loss of a step as logged (a data-parallel run logs the mean over processes)."""
        return loss.item()

    def _all_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        out = dict(self.optimizers)
        for i, opt in enumerate(self.fused):
            out[f"fused{i}"] = opt
        return out

    def _set_lr(self, factor: float) -> float:
        lr = 0.0
        for name, opt in self._all_optimizers().items():
            for group, base in zip(opt.param_groups, self._base_lrs[name]):
                group["lr"] = base * factor
                lr = group["lr"] if name == "dense" else lr or group["lr"]
        for opt in self.fused:
            opt.step()  # pushes the new lr into the fused kernel; its updates run in backward
        return lr

    def total_steps(self, steps_per_epoch: int) -> int:
        total = steps_per_epoch * self.config.max_epochs
        return min(total, self.config.max_steps) if self.config.max_steps else total

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.state.partial_epoch_loss = [float(self._epoch_loss), self._epoch_batches]
        return {
            "model": self.model.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in self._all_optimizers().items()},
            "loop": loop_state_dict(self.state),
            "best_model": self.best_state,
            "rng": rng_state(),
            "task": {"kind": self.task.kind, "state": self.task.state_dict()},
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        optimizers = self._all_optimizers()
        missing = set(optimizers) ^ set(payload["optimizers"])
        if missing:
            raise ValueError(
                f"checkpoint optimizers {sorted(payload['optimizers'])} do not match "
                f"the model's {sorted(optimizers)}"
            )
        for name, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        task = payload.get("task") or {"kind": self.task.kind, "state": {}}
        if task["kind"] != self.task.kind:
            raise ValueError(
                f"the checkpoint is of a {task['kind']} run; this run trains {self.task.kind}"
            )
        if task["state"]:
            self.task.load_state_dict(task["state"])
        self.state = loop_state_from_dict(payload["loop"])
        total, count = self.state.partial_epoch_loss or (0.0, 0)
        self._epoch_loss.fill_(float(total))
        self._epoch_batches = int(count)
        self.best_state = payload.get("best_model")
        set_rng_state(payload["rng"])

    def save(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        path = save_checkpoint(
            checkpoint_path(self.checkpoint_dir, self.state.step), self.state_dict()
        )
        prune_checkpoints(self.checkpoint_dir, self.config.checkpoint.keep_last)
        return path

    def resume(self, spec: str) -> Path:
        """Loads a checkpoint: a path, or ``latest`` for the newest in ``checkpoint_dir``."""
        if spec == "latest":
            if (
                self.checkpoint_dir is None
                or (path := latest_checkpoint(self.checkpoint_dir)) is None
            ):
                raise FileNotFoundError(
                    f"checkpoint.resume=latest but no checkpoint in {self.checkpoint_dir}"
                )
        else:
            path = Path(spec)
        self.load_state_dict(load_checkpoint(path))
        log.info("resumed from %s at step %d", path, self.state.step)
        return path

    # -- the loop ----------------------------------------------------------------------------
    @property
    def _bf16(self) -> bool:
        return self.config.precision == "bf16"

    def _evaluate(self) -> dict[str, Any]:
        return self.task.evaluate(self.model, "valid")

    def _after_eval(self, metrics: dict[str, Any]) -> bool:
        """Updates early-stopping state; returns True when training should stop."""
        cfg = self.config.early_stopping
        value = headline(metrics, self.metric)
        best = self.state.best_metric
        better = best is None or (
            value > best + cfg.min_delta if self.mode == "max" else value < best - cfg.min_delta
        )
        self.state.history.append(
            {"step": self.state.step, "metric": value, **numeric_metrics(metrics, "valid")}
        )
        if better:
            self.state.best_metric = value
            self.state.best_step = self.state.step
            self.state.evals_without_improvement = 0
            self.state.best_valid = metrics
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.state.evals_without_improvement += 1
        return cfg.enabled and self.state.evals_without_improvement >= cfg.patience

    def fit(self, train: BatchSource, *, validate: bool = True) -> FitResult:
        """Trains on ``train`` until ``max_epochs``/``max_steps`` or early stopping (on the
        task's ``valid`` split, when ``validate`` and the task has one), then restores the best
        weights (``early_stopping.restore_best``)."""
        cfg = self.config
        valid = validate and self.task.has_split("valid")
        apply_thread_settings(cfg.num_threads, cfg.interop_threads)
        if cfg.checkpoint.resume:
            self.resume(cfg.checkpoint.resume)
        steps_per_epoch = len(train)
        if steps_per_epoch == 0:
            raise ValueError(
                "the training split yields no batches "
                "(empty split, or batch_size larger than the split with drop_last)"
            )
        total = self.total_steps(steps_per_epoch)
        eval_every = cfg.eval_every_steps
        wall_start = time.perf_counter()
        last_valid: dict[str, Any] | None = None
        last_eval_step = -1
        stop = self.state.stopped_early or self.state.step >= total
        self.model.train()
        while not stop and self.state.epoch < cfg.max_epochs:
            train.set_epoch(self.state.epoch)
            bar = Progress(
                steps_per_epoch,
                f"epoch {self.state.epoch + 1}/{cfg.max_epochs}",
                unit="batches",
                rate_unit="examples",
                enabled=cfg.progress,
                initial=self.state.batch_in_epoch,
            )
            self._show_valid(bar)
            t0 = time.perf_counter()
            window_examples, window_start = 0, t0
            for batch in train.iter_from(self.state.batch_in_epoch):
                lr = self._set_lr(lr_factor(cfg.schedule, self.state.step, total))
                if self.device.type != "cpu":
                    batch = batch.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, torch.bfloat16, enabled=self._bf16):
                    loss = self.task.training_loss(self.model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {self.state.step}; "
                        "lower the learning rate or clip gradients"
                    )
                for opt in self.optimizers.values():
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip_norm:
                    torch.nn.utils.clip_grad_norm_(self.dense_params, cfg.grad_clip_norm)
                for opt in self.optimizers.values():
                    opt.step()
                self._epoch_loss += loss.detach()
                self._epoch_batches += 1
                self.state.step += 1
                self.state.batch_in_epoch += 1
                self.state.examples += len(batch)
                window_examples += len(batch)
                bar.update(1, count=len(batch))
                self._after_step()
                if self.state.step % cfg.log_every_steps == 0:
                    now = time.perf_counter()
                    rate = window_examples / max(now - window_start, 1e-9)
                    point = {"loss": self._loss_value(loss), "lr": lr, "examples_per_sec": rate}
                    self.train_curve.append({"step": self.state.step, **point})
                    bar.set_postfix(loss=f"{point['loss']:.4f}")
                    if self.tracker:
                        self.tracker.log_metrics(
                            {f"train/{k}": v for k, v in point.items()}, step=self.state.step
                        )
                    window_examples, window_start = 0, now
                if eval_every and valid and self.state.step % eval_every == 0:
                    self.state.train_seconds += time.perf_counter() - t0
                    last_valid, last_eval_step = self._evaluate(), self.state.step
                    stop = self._after_eval(last_valid)
                    self._log_eval(last_valid)
                    self._show_valid(bar)
                    t0 = time.perf_counter()
                    window_start = t0
                if cfg.checkpoint.every_steps and self.state.step % cfg.checkpoint.every_steps == 0:
                    self.state.train_seconds += time.perf_counter() - t0
                    self.save()
                    t0 = time.perf_counter()
                if stop or self.state.step >= total:
                    stop = True
                    break
            self.state.train_seconds += time.perf_counter() - t0
            bar.close()
            if stop or self.state.batch_in_epoch >= steps_per_epoch:
                self._close_epoch_loss()
            if self.state.batch_in_epoch >= steps_per_epoch:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                if valid and not eval_every and not stop:
                    last_valid, last_eval_step = self._evaluate(), self.state.step
                    stop = self._after_eval(last_valid)
                    self._log_eval(last_valid)
        if valid and last_eval_step != self.state.step and self.state.step > 0:
            last_valid = self._evaluate()
            self._after_eval(last_valid)
            self._log_eval(last_valid)
        self.state.stopped_early = (
            self.state.evals_without_improvement >= cfg.early_stopping.patience
            and cfg.early_stopping.enabled
        )
        if cfg.checkpoint.every_steps:
            self.save()
        best_valid = self.state.best_valid
        if self.best_state is not None and cfg.early_stopping.restore_best:
            self.model.load_state_dict(self.best_state)
        else:
            best_valid = last_valid
        wall = time.perf_counter() - wall_start
        rate = (
            self.state.examples / self.state.train_seconds if self.state.train_seconds > 0 else 0.0
        )
        stats = self.task.stats(self.model)
        curves = {"train": list(self.train_curve), "valid": list(self.state.history)}
        return FitResult(self.state, best_valid, last_valid, rate, wall, stats, curves)

    def _close_epoch_loss(self) -> None:
        """Records the mean loss of the epoch's batches (an epoch split by a resume counts as
        one: the running sum is part of every checkpoint)."""
        if self._epoch_batches:
            self.state.epoch_losses.append(float(self._epoch_loss) / self._epoch_batches)
        self._epoch_loss.zero_()
        self._epoch_batches = 0

    def _show_valid(self, bar: Progress) -> None:
        """The last validation metric, after the progress rate."""
        if self.state.history:
            bar.set_postfix(**{f"valid {self.metric}": f"{self.state.history[-1]['metric']:.4f}"})

    def _log_eval(self, metrics: dict[str, Any]) -> None:
        if self.tracker:
            self.tracker.log_metrics(numeric_metrics(metrics, "valid"), step=self.state.step)
