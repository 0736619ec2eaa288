"""The same distributed run without Ray: processes started by ``torch.distributed.run``.

``recsys bench distributed`` compares Ray Train's cost against this launcher: the workers run
the very same :func:`recsys.distributed.worker.run_worker` (same sharding, loader split and
trainer), only the process group comes from ``torch.distributed.run``'s rendezvous instead of
Ray's, and checkpoints are folders on the local disk (:class:`LocalCheckpoints`; no restarts).

:func:`train_with_torchrun` is the driver (one machine, ``trainer.distributed.workers``
processes); ``python -m recsys.distributed.torchrun REQUEST OUT`` is what each process runs,
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` set by ``torch.distributed.run``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recsys.data.prepared import PreparedDataset
from recsys.distributed.checkpoint import load_full_model
from recsys.distributed.launcher import DistributedError, preflight, worker_request
from recsys.distributed.worker import RESULTS_FILE, LocalCheckpoints, run_worker
from recsys.train.ranking_run import ModelRecipe

__all__ = ["main", "train_with_torchrun"]

REQUEST_FILE = "request.pkl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_with_torchrun(
    recipe: ModelRecipe,
    dataset: PreparedDataset,
    *,
    seed: int,
    out: Path,
    timeout_s: float = 3600.0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Trains ``recipe`` on ``dataset`` in ``trainer.distributed.workers`` processes of
    ``torch.distributed.run`` on this machine; returns ``(model, results)`` as
    :func:`recsys.distributed.launcher.train_and_test_distributed` does, with
    ``results["distributed"]["launcher"] == "torchrun"``. ``out`` receives the request, the
    checkpoints and the final state. A process that fails or a run past ``timeout_s`` raises
    :class:`DistributedError` with the last lines the processes wrote."""
    from ray import cloudpickle  # the request holds closures, as Ray sends it

    config = recipe.trainer.distributed
    model, plan = preflight(recipe, dataset)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    request = worker_request(recipe, dataset, seed=seed, status_dir=out / "workers")
    (out / REQUEST_FILE).write_bytes(cloudpickle.dumps(request))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={config.workers}",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        "-m",
        "recsys.distributed.torchrun",
        str(out / REQUEST_FILE),
        str(out),
    ]
    env = os.environ | {"OMP_NUM_THREADS": str(max(1, int(config.cpus_per_worker)))}
    t0 = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DistributedError(
            f"torch.distributed.run did not finish in {timeout_s:.0f} s"
        ) from None
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line][-3:]
        raise DistributedError(
            f"torch.distributed.run exited with {done.returncode}: " + " | ".join(tail)
        )
    final = out / "final"
    results = json.loads((final / RESULTS_FILE).read_text())
    load_full_model(final, model)
    results["distributed"] = {
        "workers": config.workers,
        "backend": "nccl" if config.gpus_per_worker > 0 else "gloo",
        "sharding": config.sharding,
        "plan": results.pop("sharding", plan),
        "restarts": 0,
        "wall_seconds": wall,
        "storage": str(out),
        "launcher": "torchrun",
    }
    return model, results


def main(argv: list[str] | None = None) -> None:
    """One process of a :func:`train_with_torchrun` run: ``REQUEST OUT``."""
    from ray import cloudpickle

    request_path, out = argv if argv is not None else sys.argv[1:]
    request = cloudpickle.loads(Path(request_path).read_bytes())
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    gpu = request.trainer.distributed.gpus_per_worker > 0 and torch.cuda.is_available()
    if gpu:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if gpu else "gloo")
    try:
        run_worker(
            request,
            rank=rank,
            world=world,
            local_world=local_world,
            device=device,
            checkpoints=LocalCheckpoints(Path(out)),
        )
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
