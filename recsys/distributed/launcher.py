"""The driver of a distributed ranker run: Ray Train's ``TorchTrainer`` around the one trainer.

:func:`train_and_test_distributed` has the signature of
:func:`recsys.train.ranking_run.train_and_test`, so a run plan swaps one for the other when
``trainer.distributed.workers > 0``. It

1. checks what can be checked before anything starts: the global batch splits evenly, the
   tables fit the memory budget under the chosen sharding (TorchRec's planner, dry run here),
   the Ray address answers, the cluster has the CPUs/GPUs the workers ask for;
2. connects to ``trainer.distributed.address`` or starts a local Ray for the run;
3. runs :func:`recsys.distributed.worker.train_worker` in ``workers`` processes (gloo on CPU,
   nccl on GPU), restarting the group from the last checkpoint up to ``max_failures`` times;
4. assembles the unsharded model from the final sharded checkpoint, replays the learning
   curves into the run's MLflow record, stops the Ray it started.

Any failure is one :class:`DistributedError` naming what failed (the worker and its error, the
address, the missing resources); nothing waits forever.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from torch import nn

from recsys.data.prepared import PreparedDataset
from recsys.distributed.checkpoint import load_full_model
from recsys.distributed.sharding import (
    ShardingError,
    attach_sparse_optimizer,
    describe_plan,
    plan_sharding,
)
from recsys.distributed.worker import RESULTS_FILE, WorkerRequest, _local_batch, train_worker
from recsys.train.parallel import DistributedConfig
from recsys.train.ranking_run import ModelRecipe
from recsys.train.tracking import Tracker, numeric_metrics

__all__ = [
    "DistributedError",
    "connect",
    "preflight",
    "train_and_test_distributed",
    "worker_request",
]

log = logging.getLogger(__name__)


class DistributedError(RuntimeError):
    """A distributed run that cannot start or did not finish; the message says why."""


def _host_port(address: str) -> tuple[str, int] | None:
    bare = address.split("://", 1)[-1]
    if bare in ("auto", "local"):
        return None
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(
            f"trainer.distributed.address={address!r} is not host:port or ray://host:port"
        )
    return host, int(port)


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fails fast (within ``timeout_s``) when nothing listens at a Ray ``address``."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as e:
        raise DistributedError(
            f"no Ray cluster answers at trainer.distributed.address={address!r} "
            f"({type(e).__name__}: {e}); start one with `ray start --head` or set the address "
            "to null for a local Ray"
        ) from None


def connect(config: DistributedConfig) -> bool:
    """Connects to ``config.address`` or starts a local Ray sized for the workers. Returns
    whether this call started Ray (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(config.start_timeout_s))
    if config.address:
        check_address(config.address)
        try:
            ray.init(address=config.address, logging_level=logging.WARNING, log_to_driver=True)
        except Exception as e:  # ConnectionError, TimeoutError, RuntimeError across versions
            raise DistributedError(
                f"could not join the Ray cluster at {config.address!r}: {type(e).__name__}: {e}"
            ) from None
        return True
    need_cpus = config.workers * config.cpus_per_worker
    need_gpus = config.workers * config.gpus_per_worker
    ray.init(
        num_cpus=max(os.cpu_count() or 1, int(-(-need_cpus // 1))),
        num_gpus=None if need_gpus else 0,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    return True


def check_resources(config: DistributedConfig) -> None:
    """The Ray cluster must hold the workers' CPUs and GPUs (Ray would otherwise wait)."""
    import ray

    have = ray.cluster_resources()
    for kind, each in (("CPU", config.cpus_per_worker), ("GPU", config.gpus_per_worker)):
        need = config.workers * each
        if need and have.get(kind, 0.0) + 1e-9 < need:
            raise DistributedError(
                f"{config.workers} workers x {each:g} {kind} need {need:g} {kind}s; the Ray "
                f"cluster has {have.get(kind, 0.0):g} (lower trainer.distributed.workers or "
                f"cpus_per_worker/gpus_per_worker)"
            )


def _backend(config: DistributedConfig) -> str:
    if config.backend != "auto":
        return config.backend
    return "nccl" if config.gpus_per_worker > 0 else "gloo"


def _worker_failure(error: BaseException) -> str:
    """One line per failed worker from Ray Train's error."""
    failures = getattr(error, "worker_failures", None) or {}
    inner = getattr(error, "cause", None) or getattr(error, "__cause__", None)
    if not failures and inner is not None:
        failures = getattr(inner, "worker_failures", None) or {}
    if failures:
        lines = []
        for rank, exc in sorted(failures.items()):
            text = str(exc).strip().splitlines()
            lines.append(f"worker {rank}: {text[-1] if text else type(exc).__name__}")
        return "; ".join(lines)
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def preflight(recipe: ModelRecipe, dataset: PreparedDataset) -> tuple[nn.Module, dict]:
    """The unsharded model (also the final model's shell) and the dry-run sharding plan."""
    import torch

    config = recipe.trainer.distributed
    if recipe.shardable_build is None:
        raise DistributedError(f"model {recipe.name!r} has no shardable form")
    _local_batch(recipe.trainer.batch_size, config.workers)
    model = recipe.shardable_build(dataset.spec)
    probe = recipe.shardable_build(dataset.spec)
    attach_sparse_optimizer(probe, recipe.sparse_optimizer_spec)
    device = torch.device("cuda" if config.gpus_per_worker > 0 else "cpu")
    try:
        plan = plan_sharding(
            probe,
            world_size=config.workers,
            device=device,
            sharding=config.sharding,
            memory_budget_gb=config.memory_budget_gb,
        )
    except ShardingError as e:
        raise DistributedError(f"sharding plan: {e}") from None
    return model, describe_plan(plan)


def worker_request(
    recipe: ModelRecipe, dataset: PreparedDataset, *, seed: int, status_dir: Path | None
) -> WorkerRequest:
    """What every worker of a run of ``recipe`` on ``dataset`` is sent."""
    return WorkerRequest(
        dataset_root=dataset.root,
        build=recipe.shardable_build,  # type: ignore[arg-type]
        init_build=recipe.build,
        dense_optimizer=recipe.dense_optimizer,
        sparse_optimizer=recipe.sparse_optimizer_spec,
        trainer=recipe.trainer,
        seed=seed,
        status_dir=status_dir,
    )


def _replay_curves(tracker: Tracker | None, curves: dict[str, list[dict[str, Any]]]) -> None:
    if tracker is None:
        return
    for point in curves.get("train", []):
        values = {f"train/{k}": v for k, v in point.items() if k != "step"}
        tracker.log_metrics(values, step=int(point["step"]))
    for point in curves.get("valid", []):
        values = {k: v for k, v in point.items() if k.startswith("valid/")}
        tracker.log_metrics(values, step=int(point["step"]))


def train_and_test_distributed(
    recipe: ModelRecipe,
    dataset: PreparedDataset,
    *,
    seed: int,
    tracker: Tracker | None,
    checkpoint_dir: Path | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Trains ``recipe`` on ``dataset`` in ``trainer.distributed.workers`` Ray Train workers
    and tests it (see the module docstring); returns ``(model, results)`` like
    :func:`recsys.train.ranking_run.train_and_test`, plus ``results["distributed"]``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = recipe.trainer.distributed
    model, plan = preflight(recipe, dataset)
    storage = (checkpoint_dir or dataset.root / "distributed").resolve() / "ray"
    request = worker_request(recipe, dataset, seed=seed, status_dir=storage / "workers")
    started = connect(config)
    t0 = time.perf_counter()
    try:
        check_resources(config)
        gpu = config.gpus_per_worker > 0
        resources = {"CPU": config.cpus_per_worker}
        if gpu:
            resources["GPU"] = config.gpus_per_worker
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=request,  # type: ignore[arg-type]
            torch_config=TorchConfig(backend=_backend(config)),
            scaling_config=ScalingConfig(
                num_workers=config.workers, use_gpu=gpu, resources_per_worker=resources
            ),
            run_config=RunConfig(
                name=f"train-{int(time.time() * 1000)}",
                storage_path=str(storage),
                failure_config=FailureConfig(max_failures=config.max_failures),
                checkpoint_config=CheckpointConfig(
                    num_to_keep=max(1, recipe.trainer.checkpoint.keep_last)
                ),
            ),
        )
        try:
            result = trainer.fit()
        except Exception as e:
            raise DistributedError(
                f"distributed training failed after {time.perf_counter() - t0:.0f} s: "
                f"{_worker_failure(e)}"
            ) from e
        if result.checkpoint is None:
            raise DistributedError("distributed training ended without a final checkpoint")
        with result.checkpoint.as_directory() as folder:
            results = json.loads((Path(folder) / RESULTS_FILE).read_text())
            load_full_model(Path(folder), model)
    finally:
        if started:
            import ray

            ray.shutdown()
    wall = time.perf_counter() - t0
    results["distributed"] = {
        "workers": config.workers,
        "backend": _backend(config),
        "sharding": config.sharding,
        "plan": results.pop("sharding", plan),
        "restarts": _restarts(storage),
        "wall_seconds": wall,
        "storage": str(storage),
    }
    _replay_curves(tracker, results.get("curves", {}))
    if tracker is not None:
        tracker.log_metrics(numeric_metrics({"workers": config.workers}, "distributed"))
    return model, results


def _restarts(storage: Path) -> int:
    """How many times the worker group started beyond the first (from the pid files)."""
    folder = storage / "workers"
    starts = folder / "starts"
    return max(0, len(starts.read_text().split()) - 1) if starts.exists() else 0
