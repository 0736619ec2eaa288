"""What each Ray Train worker runs: the one trainer on its shard of the data and the tables.

:func:`train_worker` is Ray Train's ``train_loop_per_worker``. In every worker it

1. builds the model exactly as a one-process run of the same seed would (a plain TorchRec
   collection), attaches the sparse optimizer to the tables, shards them with TorchRec's
   planner (:mod:`recsys.distributed.sharding`) and copies the initial weights in;
2. reads its own part of every split (``ParquetBatchLoader(rank, world_size)``), evaluates its
   part and exchanges predictions so each worker computes the metrics of the whole split;
3. trains with :class:`DistributedTrainer`, the :class:`~recsys.train.trainer.Trainer` loop
   whose checkpoints go to Ray Train (each worker its own shards,
   :mod:`recsys.distributed.checkpoint`) and which resumes from Ray's latest checkpoint when
   Ray restarts the group after a failure;
4. reports a last checkpoint holding the final (best) weights and, from rank 0,
   ``results.json`` (what the run's ``metrics.json`` is made of).

The gradients match a one-process run on the same global batch: DDP averages the dense
gradients over workers and TorchRec divides the embedding gradients by the world size.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from recsys.data.prepared import load_prepared
from recsys.distributed.checkpoint import load_state, save_state
from recsys.distributed.sharding import (
    attach_sparse_optimizer,
    copy_full_state,
    describe_plan,
    plan_sharding,
    shard_model,
)
from recsys.train.optimizers import OptimizerFactory
from recsys.train.run import seed_everything
from recsys.train.tasks.ranking import RankingTask
from recsys.train.trainer import Trainer, TrainerConfig
from recsys.types import FeatureSpec

__all__ = [
    "RESULTS_FILE",
    "CheckpointSink",
    "DistributedTrainer",
    "LocalCheckpoints",
    "RayCheckpoints",
    "WorkerRequest",
    "run_worker",
    "train_worker",
]

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
FUSED = "fused0"


@dataclass
class WorkerRequest:
    """Everything a worker needs, picklable (Ray sends it to every worker)."""

    dataset_root: Path
    #: the model with plain TorchRec tables (what DMP shards)
    build: Callable[[FeatureSpec], nn.Module]
    #: the model as a one-process run builds it: its initial weights are copied into the shards
    init_build: Callable[[FeatureSpec], nn.Module]
    dense_optimizer: OptimizerFactory
    sparse_optimizer: Mapping[str, Any]
    trainer: TrainerConfig
    seed: int
    #: where each worker writes its pid (``rank<r>.pid``) for drills and diagnostics
    status_dir: Path | None = None


class DistributedTrainer(Trainer):
    """The trainer over a ``DistributedModelParallel`` model in one worker of a Ray Train run.

    The tables' optimizer is TorchRec's fused one (run inside backward); the dense parameters
    are those without an in-backward optimizer. Checkpoints are reported to Ray Train; the
    logged loss is the mean over workers. ``drill``: ``(rank, step)`` to kill one worker in
    the first attempt (see ``trainer.distributed.failure_drill``)."""

    def __init__(
        self,
        *args: Any,
        checkpoints: CheckpointSink,
        drill: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.checkpoints = checkpoints
        self.drill = drill
        self.resumed = False

    def _parameter_roles(
        self, model: nn.Module
    ) -> tuple[list[torch.optim.Optimizer], list[nn.Parameter], list[nn.Parameter]]:
        from torchrec.optim.optimizers import in_backward_optimizer_filter

        dense = [p for _, p in in_backward_optimizer_filter(model.named_parameters())]
        return [model.fused_optimizer], [], [p for p in dense if p.requires_grad]

    def _loss_value(self, loss: torch.Tensor) -> float:
        total = loss.detach().float().clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    def _after_step(self) -> None:
        if self.drill and not self.resumed and self.drill == (self.rank, self.state.step):
            log.warning("failure drill: killing worker %d at step %d", self.rank, self.state.step)
            os.kill(os.getpid(), signal.SIGKILL)

    def save(self) -> Path | None:
        with tempfile.TemporaryDirectory(prefix="recsys-ckpt-") as tmp:
            save_state(Path(tmp), self.state_dict(), [FUSED], self.rank)
            self.checkpoints.report(
                Path(tmp),
                {"step": self.state.step, "epoch": self.state.epoch},
                f"step-{self.state.step:09d}",
            )
        return None

    def resume_latest(self) -> bool:
        """Loads the run's latest checkpoint (after a restart of the group), if there is one."""
        with self.checkpoints.latest() as folder:
            if folder is None:
                return False
            self.load_state_dict(load_state(folder, self.state_dict(), [FUSED], self.rank))
        self.resumed = True
        log.info("worker %d resumed at step %d", self.rank, self.state.step)
        return True


class CheckpointSink:
    """Where a worker's checkpoints go: every worker reports its own folder (its shards, its
    ``rank<r>.pt``) under one checkpoint name; :meth:`latest` is the newest such checkpoint."""

    def report(self, folder: Path, metrics: Mapping[str, Any], name: str) -> None:
        raise NotImplementedError

    def latest(self) -> AbstractContextManager[Path | None]:
        raise NotImplementedError


class RayCheckpoints(CheckpointSink):
    """Ray Train's checkpoint API (``ray.train.report`` / ``ray.train.get_checkpoint``)."""

    def report(self, folder: Path, metrics: Mapping[str, Any], name: str) -> None:
        import ray.train

        ray.train.report(
            dict(metrics),
            checkpoint=ray.train.Checkpoint.from_directory(str(folder)),
            checkpoint_dir_name=name,
        )

    @contextmanager
    def latest(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)


class LocalCheckpoints(CheckpointSink):
    """Checkpoints as folders ``root/<name>`` on a file system every worker sees (the
    processes of ``torch.distributed.run`` on one machine); no restarts, so nothing resumes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def report(self, folder: Path, metrics: Mapping[str, Any], name: str) -> None:
        shutil.copytree(folder, self.root / name, dirs_exist_ok=True)
        dist.barrier()  # the checkpoint is whole once every worker has copied its part

    @contextmanager
    def latest(self) -> Iterator[Path | None]:
        yield None


def _gather(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every worker's ``(labels, probs)`` of its part of a split, concatenated in rank order."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (labels, probs))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train_worker(request: WorkerRequest) -> None:
    """Ray Train's ``train_loop_per_worker`` (see the module docstring)."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    run_worker(
        request,
        rank=context.get_world_rank(),
        world=context.get_world_size(),
        local_world=context.get_local_world_size(),
        device=ray.train.torch.get_device(),
        checkpoints=RayCheckpoints(),
    )


def run_worker(
    request: WorkerRequest,
    *,
    rank: int,
    world: int,
    local_world: int,
    device: torch.device,
    checkpoints: CheckpointSink,
) -> None:
    """One worker of a run whose process group is up (Ray Train's or ``torch.distributed.run``'s):
    trains its part, reports checkpoints and the final state to ``checkpoints``."""
    if request.status_dir is not None:
        request.status_dir.mkdir(parents=True, exist_ok=True)
        (request.status_dir / f"rank{rank}.pid").write_text(str(os.getpid()))
        if rank == 0:
            with open(request.status_dir / "starts", "a") as f:
                f.write(f"{os.getpid()}\n")
    cfg = request.trainer
    distributed = cfg.distributed
    threads = max(1, int(distributed.cpus_per_worker))
    cfg = dataclasses.replace(
        cfg,
        device=device.type if device.type == "cpu" else f"cuda:{device.index or 0}",
        num_threads=cfg.num_threads or threads,
        progress=cfg.progress if rank == 0 else False,
        checkpoint=dataclasses.replace(cfg.checkpoint, resume=None),
    )
    dataset = load_prepared(request.dataset_root)
    seed_everything(request.seed)
    initial = {
        k: v.detach().cpu() for k, v in request.init_build(dataset.spec).state_dict().items()
    }
    model = request.build(dataset.spec)
    attach_sparse_optimizer(model, request.sparse_optimizer)
    plan = plan_sharding(
        model,
        world_size=world,
        device=device,
        sharding=distributed.sharding,
        memory_budget_gb=distributed.memory_budget_gb,
        local_world_size=local_world,
        process_group=dist.group.WORLD,
    )
    sharded = shard_model(model, plan, device)
    copy_full_state(sharded, initial)

    def shard(split: str, batch_size: int, **options: Any) -> Any:
        return dataset.loader(
            split, batch_size, rank=rank, world_size=world, prefetch=cfg.prefetch, **options
        )

    local_batch = _local_batch(cfg.batch_size, world)
    local_eval = max(1, cfg.eval_batch_size // world)
    task = RankingTask(
        dataset.spec.labels,
        eval_loaders={
            "valid": lambda: shard("valid", local_eval, shuffle=False),
            "test": lambda: shard("test", local_eval),
        },
        loss_weights=cfg.loss_weights,
        gather=_gather,
    )
    trainer = DistributedTrainer(
        sharded,
        cfg,
        task=task,
        dense_optimizer=request.dense_optimizer,
        tracker=None,
        checkpoints=checkpoints,
        drill=distributed.drill(),
    )
    trainer.resume_latest()
    train = shard("train", local_batch, shuffle=cfg.shuffle, seed=request.seed)
    result = trainer.fit(train)
    test, reliability = task.evaluate_with_reliability(sharded, "test")
    with tempfile.TemporaryDirectory(prefix="recsys-final-") as tmp:
        folder = Path(tmp)
        save_state(folder, trainer.state_dict(), [FUSED], rank)
        if rank == 0:
            results = {
                "test": test,
                "valid": result.best_valid,
                "train": result.summary()
                | {
                    # every worker steps in lockstep: the run's rate is world x one worker's
                    "examples": result.state.examples * world,
                    "examples_per_sec": result.examples_per_sec * world,
                    "workers": world,
                    "global_batch_size": local_batch * world,
                },
                "reliability": reliability,
                "curves": result.curves,
                "sharding": describe_plan(plan),
                "params": sum(v.numel() for v in initial.values()),
            }
            (folder / RESULTS_FILE).write_text(json.dumps(results, default=float))
        checkpoints.report(folder, {"final": 1, "step": trainer.state.step}, "final")


def _local_batch(global_batch: int, world: int) -> int:
    """Each worker's batch of a ``global_batch`` split over ``world`` workers."""
    if global_batch % world:
        raise ValueError(
            f"trainer.batch_size={global_batch} is not divisible by "
            f"trainer.distributed.workers={world}: the global batch is split evenly"
        )
    return global_batch // world
