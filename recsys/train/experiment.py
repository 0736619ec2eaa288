"""One experiment run: prepare data, train the model (and baselines), test, record everything.

The config layer turns a Hydra config into a :class:`RunPlan` of plain objects; this module
knows nothing of Hydra. A run writes into its run folder:

* ``metrics.json``: ``{"test", "valid", "train", "data", "baselines"}`` (per task for
  multi-task models),
* ``model.pt`` (the trained weights) and ``feature_spec.json``,
* ``checkpoints/`` when periodic checkpoints are enabled,

and records params, metrics over steps, the resolved config, ``metrics.json`` and the model in
MLflow.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.data.prepared import PreparedDataset
from recsys.metrics.binary import auc
from recsys.train.evaluation import evaluate
from recsys.train.tracking import Tracker, TrackingConfig, numeric_metrics
from recsys.train.trainer import OptimizerFactory, Trainer, TrainerConfig
from recsys.types import FeatureSpec

log = logging.getLogger(__name__)

TRUTH_PREFIX = "p_"


@dataclass
class ModelRecipe:
    """How to build and train one model on a prepared data set."""

    name: str
    build: Callable[[FeatureSpec], nn.Module]
    dense_optimizer: OptimizerFactory
    sparse_optimizer: OptimizerFactory | None
    trainer: TrainerConfig


@dataclass
class RunPlan:
    """Everything one run needs, as plain objects."""

    name: str
    run_dir: Path
    output_root: Path
    seed: int
    dataset: Callable[[], PreparedDataset]
    model: ModelRecipe
    baselines: list[ModelRecipe] = field(default_factory=list)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    params: Mapping[str, Any] = field(default_factory=dict)
    resolved_config: str = ""


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def best_achievable_auc(dataset: PreparedDataset, split: str = "test") -> dict[str, float]:
    """AUC of the generator's ground-truth probabilities (aux ``p_<label>``) per label on
    ``split``: the ceiling a model can reach. Computed once and kept in the data set's manifest
    under ``best_achievable_auc``; empty when the data carries no ground truth (real data)."""
    key = "best_achievable_auc"
    if split in dataset.manifest.get(key, {}):
        return dict(dataset.manifest[key][split])
    aux = set(dataset.manifest.get("raw_schema", {}).get("aux", []))
    labels = [t for t in dataset.spec.labels if f"{TRUTH_PREFIX}{t}" in aux]
    if not labels:
        return {}
    columns = labels + [f"{TRUTH_PREFIX}{t}" for t in labels]
    frame = dataset.read_frame(split, columns=columns)
    best = {
        t: float(auc(frame[t].to_numpy(), frame[f"{TRUTH_PREFIX}{t}"].to_numpy())) for t in labels
    }
    dataset.annotate(key, {**dataset.manifest.get(key, {}), split: best})
    return best


def data_summary(dataset: PreparedDataset) -> dict[str, Any]:
    """Facts about the data set for ``metrics.json``."""
    m = dataset.manifest
    spec = dataset.spec
    return {
        "path": str(dataset.root),
        "source": m.get("source", {}).get("name") if isinstance(m.get("source"), dict) else None,
        "rows": {s: dataset.num_rows(s) for s in ("train", "valid", "test")},
        "positive_rate": {
            s: m["splits"][s].get("positive_rate") for s in ("train", "valid", "test")
        },
        "num_dense": spec.num_dense,
        "num_sparse": len(spec.sparse),
        "cardinalities": {f.name: f.cardinality for f in spec.sparse},
        "labels": list(spec.labels),
        "bad_rows_skipped": m.get("read_report", {}).get("rows_skipped", 0),
    }


def train_and_test(
    recipe: ModelRecipe,
    dataset: PreparedDataset,
    *,
    seed: int,
    tracker: Tracker | None,
    checkpoint_dir: Path | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Trains ``recipe`` on ``dataset`` and evaluates on the test split."""
    seed_everything(seed)
    cfg = recipe.trainer
    model = recipe.build(dataset.spec)
    trainer = Trainer(
        model,
        cfg,
        task_names=dataset.spec.labels,
        dense_optimizer=recipe.dense_optimizer,
        sparse_optimizer=recipe.sparse_optimizer,
        tracker=tracker,
        checkpoint_dir=checkpoint_dir,
    )
    train = dataset.loader(
        "train", cfg.batch_size, shuffle=cfg.shuffle, seed=seed, prefetch=cfg.prefetch
    )
    valid = dataset.loader("valid", cfg.eval_batch_size, shuffle=False, prefetch=cfg.prefetch)
    result = trainer.fit(train, valid)
    test = evaluate(
        model,
        dataset.loader("test", cfg.eval_batch_size, prefetch=cfg.prefetch),
        dataset.spec.labels,
        device=trainer.device,
    )
    return model, {
        "test": test,
        "valid": result.best_valid,
        "train": result.summary(),
        "params": sum(p.numel() for p in model.parameters()),
    }


def run_experiment(plan: RunPlan) -> dict[str, Any]:
    """Runs ``plan``; returns (and writes) the content of ``metrics.json``."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(plan.seed)
    t0 = time.perf_counter()
    dataset = plan.dataset()
    prepare_seconds = time.perf_counter() - t0
    tracker = Tracker(plan.tracking, plan.output_root)
    tracker.start(plan.params)
    status = "FAILED"
    try:
        tracker.record_config(plan.run_dir, plan.resolved_config)
        model, main = train_and_test(
            plan.model,
            dataset,
            seed=plan.seed,
            tracker=tracker,
            checkpoint_dir=plan.run_dir / "checkpoints",
        )
        data = data_summary(dataset)
        data["prepare_seconds"] = prepare_seconds
        best = best_achievable_auc(dataset)
        if best:
            data["best_achievable_auc"] = best
        metrics: dict[str, Any] = {
            "name": plan.name,
            "model": plan.model.name,
            "test": main["test"],
            "valid": main["valid"],
            "train": main["train"] | {"parameters": main["params"]},
            "data": data,
        }
        baselines = {}
        for recipe in plan.baselines:
            _, result = train_and_test(
                recipe, dataset, seed=plan.seed, tracker=None, checkpoint_dir=None
            )
            baselines[recipe.name] = {
                "test": result["test"],
                "valid": result["valid"],
                "train": result["train"],
            }
            tracker.log_metrics(numeric_metrics(result["test"], f"baseline/{recipe.name}/test"))
        if baselines:
            metrics["baselines"] = baselines
        torch.save(model.state_dict(), plan.run_dir / "model.pt")
        (plan.run_dir / "feature_spec.json").write_text(
            json.dumps(dataset.spec.to_dict(), indent=2)
        )
        metrics_path = plan.run_dir / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2, default=float))
        tracker.log_metrics(numeric_metrics(main["test"], "test"))
        tracker.log_artifact(metrics_path)
        tracker.log_model(model)
        status = "FINISHED"
        metrics["run_id"] = tracker.run_id
        return metrics
    finally:
        tracker.end(status)


def closing_lines(train: Mapping[str, Any], metrics_path: Path) -> list[str]:
    """The last lines every run prints: training speed and time, then the metrics file."""
    return [
        f"train {train['examples_per_sec']:,.0f} examples/s, {train['wall_seconds']:.1f} s, "
        f"{train['steps']} steps",
        f"metrics: {metrics_path}",
    ]
