"""Distributed training and serving: what Ray costs and what a second worker buys.

Training, on the same prepared data and model (``--experiment``, the tiny multi-task social
ranker by default, ``--epochs`` over its train split), in interleaved rounds (every variant once
per round, the order rotating) so the load of a shared machine hits all of them alike:

- ``one_process``: ``recsys train`` without ``trainer.distributed`` (our fused tables, all the
  machine's threads);
- ``ray_1``: one Ray Train worker (TorchRec's ``DistributedModelParallel`` over a world of 1);
- ``ray_2``: two Ray Train workers, tables sharded by TorchRec's planner, the global batch split;
- ``torchrun_2``: the same two workers started by ``torch.distributed.run`` instead of Ray.

Each run reports the in-loop rate (global examples per second of training steps, what the
workers measure) and its wall time (start of the worker group, training, the final evaluation
and checkpoint). Scaling efficiency is ``ray_2 / (2 x ray_1)`` in-loop; Ray's overhead is the
wall-time ratio ``ray_2 / torchrun_2`` (the same processes, the same work). Ray is started once
before the rounds (its start time is printed apart): a user pays it once per run.

Serving (``benchmarks/serve_distributed.py``): p50/p99 latency of ``POST /rank`` at 1 and 8
concurrent clients, the embedded server vs Ray Serve with dynamic batching on and off.

Run: ``python benchmarks/distributed_bench.py`` or ``recsys bench distributed``.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP (as the recsys command does): with active waiting, 2 OpenMP threads
# next to any other busy process run 30-50x slower, which would hit one_process only.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_machine import cpu_model

VARIANTS = ("one_process", "ray_1", "ray_2", "torchrun_2")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg()[0],
    }


def prepare(work: Path, experiment: str, epochs: int, batch: int) -> tuple[Any, Any]:
    """The recipe and prepared data set of ``recsys train experiment=<experiment>``."""
    from recsys.config.compose import compose_config
    from recsys.config.plan import plan_from_config
    from recsys.config.schema import validate

    overrides = [
        f"experiment={experiment}",
        f"paths.output_root={work / 'out'}",
        f"paths.data_root={work / 'data'}",
        "tracking.enabled=false",
        f"trainer.max_epochs={epochs}",
        f"trainer.batch_size={batch}",
        "trainer.early_stopping.patience=1000",
        "trainer.checkpoint.every_steps=null",
        "trainer.distributed.workers=2",
    ]
    plan = plan_from_config(validate(compose_config("train", overrides)), work / "run")
    plan.experiment.prepare()
    return plan.experiment.model, plan.experiment.dataset


def variant_recipe(recipe: Any, name: str, gpu: bool) -> Any:
    """``recipe`` as variant ``name`` runs it (see the module docstring)."""
    cpus = os.cpu_count() or 1
    workers = {"one_process": 0, "ray_1": 1, "ray_2": 2, "torchrun_2": 2}[name]
    per_worker = max(1, cpus // max(1, workers))
    distributed = dataclasses.replace(
        recipe.trainer.distributed,
        workers=workers,
        cpus_per_worker=float(per_worker),
        gpus_per_worker=1.0 if gpu and workers else 0.0,
    )
    trainer = dataclasses.replace(
        recipe.trainer,
        distributed=distributed,
        num_threads=cpus if workers == 0 else None,
        progress=False,
    )
    return dataclasses.replace(recipe, trainer=trainer)


def run_variant(name: str, recipe: Any, dataset: Any, work: Path, seed: int) -> dict[str, float]:
    from recsys.distributed.launcher import train_and_test_distributed
    from recsys.distributed.torchrun import train_with_torchrun
    from recsys.train.ranking_run import train_and_test

    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    t0 = time.perf_counter()
    if name == "one_process":
        _, results = train_and_test(recipe, dataset, seed=seed, tracker=None, checkpoint_dir=folder)
    elif name.startswith("ray"):
        _, results = train_and_test_distributed(
            recipe, dataset, seed=seed, tracker=None, checkpoint_dir=folder
        )
    else:
        _, results = train_with_torchrun(recipe, dataset, seed=seed, out=folder)
    wall = time.perf_counter() - t0
    return {
        "examples_per_sec": float(results["train"]["examples_per_sec"]),
        "wall_s": wall,
        "test_mean_auc": float(results["test"]["mean_auc"]),
        "steps": float(results["train"]["steps"]),
    }


def train_rounds(
    recipe: Any, dataset: Any, work: Path, rounds: int, seed: int, gpu: bool
) -> dict[str, list[dict[str, float]]]:
    """Every variant once per round, the order rotating by one each round."""
    out: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for name in order:
            out[name].append(
                run_variant(name, variant_recipe(recipe, name, gpu), dataset, work, seed)
            )
            print(f"  round {r + 1} {name:<12} {out[name][-1]}", flush=True)
    return out


def _median(runs: list[dict[str, float]], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def _spread(values: list[float]) -> float:
    """(max - min) / median of per-round values."""
    med = float(np.median(values))
    return float((max(values) - min(values)) / med) if med else 0.0


def training_summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians per variant and the ratios of the module docstring, each ratio the median of
    per-round ratios with its spread."""
    per_round = list(zip(*(runs[v] for v in VARIANTS)))
    idx = {v: i for i, v in enumerate(VARIANTS)}

    def ratio(a: str, b: str, key: str, scale: float = 1.0) -> dict[str, float]:
        values = [r[idx[a]][key] / (scale * r[idx[b]][key]) for r in per_round]
        return {"median": float(np.median(values)), "spread": _spread(values)}

    return {
        "variants": {
            v: {k: _median(runs[v], k) for k in runs[v][0]} | {"rounds": len(runs[v])}
            for v in VARIANTS
        },
        "scaling_efficiency": ratio("ray_2", "ray_1", "examples_per_sec", 2.0),
        "ratio_ray_2_over_one_process": ratio("ray_2", "one_process", "examples_per_sec"),
        "ratio_wall_ray_2_over_torchrun_2": ratio("ray_2", "torchrun_2", "wall_s"),
        "ratio_ray_2_over_torchrun_2": ratio("ray_2", "torchrun_2", "examples_per_sec"),
    }


def print_training(summary: dict[str, Any], ray_start_s: float) -> None:
    print(f"\n{'variant':<12} {'examples/s':>11} {'wall s':>8} {'test AUC':>9} {'steps':>6}")
    for name, v in summary["variants"].items():
        print(
            f"{name:<12} {v['examples_per_sec']:>11.0f} {v['wall_s']:>8.1f} "
            f"{v['test_mean_auc']:>9.4f} {v['steps']:>6.0f}"
        )
    for key, label in (
        ("scaling_efficiency", "scaling efficiency ray_2 / (2 x ray_1), in-loop"),
        ("ratio_ray_2_over_one_process", "ray_2 / one_process, in-loop examples/s"),
        ("ratio_ray_2_over_torchrun_2", "ray_2 / torchrun_2, in-loop examples/s"),
        ("ratio_wall_ray_2_over_torchrun_2", "ray_2 / torchrun_2, wall time"),
    ):
        r = summary[key]
        print(f"{label:<52} {r['median']:.3f} (spread {r['spread']:.1%})")
    print(f"{'Ray start (once per run, not in the wall times above)':<52} {ray_start_s:.1f} s")


EXPLAIN = """
What the numbers mean: every variant shares this machine's {cpus} cores. Two workers of one
thread each use the same cores that one process uses with {cpus} threads, so ray_2 cannot beat
one_process by more than what one process leaves idle (the loader, Python between kernels);
the scaling efficiency measures how much of a second worker's core survives the all-to-all of
the sharded tables and the all-reduce of the dense gradients over gloo. On separate machines
(multi-node) each worker brings its own cores and memory, the tables can exceed one machine,
and the exchange goes over the network instead of shared memory: the in-loop rate then scales
with the workers until the all-to-all of embeddings dominates, and Ray's start cost is paid
once per run, not per step.
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="multitask_social_tiny")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the train split per run")
    p.add_argument("--batch", type=int, default=512, help="global batch size")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all variants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", action="store_true", help="one GPU per worker (needs 2 GPUs)")
    p.add_argument("--no-serve", action="store_true", help="skip the Ray Serve part")
    p.add_argument("--serve-requests", type=int, default=200, help="timed requests per case")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    import ray

    from recsys.apps.console import quiet_libraries

    quiet_libraries()

    report: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="recsys-dist-bench-") as tmp:
        work = Path(tmp)
        recipe, dataset = prepare(work, args.experiment, args.epochs, args.batch)
        t0 = time.perf_counter()
        ray.init(
            num_cpus=max(2, os.cpu_count() or 1),
            num_gpus=torch.cuda.device_count() if args.gpu else 0,
            include_dashboard=False,
            log_to_driver=False,
        )
        ray_start = time.perf_counter() - t0
        try:
            runs = train_rounds(recipe, dataset, work, args.rounds, args.seed, args.gpu)
        finally:
            ray.shutdown()
        summary = training_summary(runs)
        report["training"] = summary | {"runs": runs, "ray_start_s": ray_start}
        print_training(summary, ray_start)
        print(EXPLAIN.format(cpus=os.cpu_count()))
        if not args.no_serve:
            from serve_distributed import measure_serving, print_serving, trained_export

            export = trained_export(work)
            report["serving"] = measure_serving(export, requests=args.serve_requests)
            print_serving(report["serving"])
    report["machine"]["load_average_at_end"] = os.getloadavg()[0]
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
