"""A ranker run: prepared Parquet -> the ranker (and baselines) trained, tested, recorded.

:class:`RankingExperiment` is the ``experiment`` of a :class:`~recsys.train.run.RunPlan` with
``task: ranking``. It prepares (or reuses) the data set, trains the model with
:class:`~recsys.train.trainer.Trainer` on a :class:`~recsys.train.tasks.ranking.RankingTask`,
tests it, trains and tests each baseline the same way, and returns ``metrics.json``'s content:
``{"test", "valid", "train", "data", "baselines", "reliability"}`` (per task for multi-task
models; ``reliability``: the test split's reliability-diagram bins per task), plus
``feature_spec.json``. On synthetic data ``data.best_achievable_auc`` is the AUC of the
generator's true probabilities: the ceiling a model can reach.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from recsys.data.prepared import PreparedDataset
from recsys.metrics.binary import auc
from recsys.train.optimizers import OptimizerFactory
from recsys.train.run import Outcome, RunPlan, seed_everything
from recsys.train.tasks.ranking import RankingTask
from recsys.train.tracking import Tracker, numeric_metrics
from recsys.train.trainer import Trainer, TrainerConfig
from recsys.types import FeatureSpec

__all__ = [
    "ModelRecipe",
    "RankingExperiment",
    "best_achievable_auc",
    "data_summary",
    "train_and_test",
]

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
    #: the same model with plain TorchRec tables on CPU, for a sharded (distributed) run
    shardable_build: Callable[[FeatureSpec], nn.Module] | None = None
    #: the ``sparse_optimizer`` config (``{"type", "lr", ...}``) a sharded run fuses in
    sparse_optimizer_spec: dict[str, Any] = field(default_factory=dict)


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
    task = RankingTask(
        dataset.spec.labels,
        eval_loaders={  # made when first evaluated, after the train loader
            "valid": lambda: dataset.loader(
                "valid", cfg.eval_batch_size, shuffle=False, prefetch=cfg.prefetch
            ),
            "test": lambda: dataset.loader("test", cfg.eval_batch_size, prefetch=cfg.prefetch),
        },
        loss_weights=cfg.loss_weights,
    )
    trainer = Trainer(
        model,
        cfg,
        task=task,
        dense_optimizer=recipe.dense_optimizer,
        sparse_optimizer=recipe.sparse_optimizer,
        tracker=tracker,
        checkpoint_dir=checkpoint_dir,
    )
    train = dataset.loader(
        "train", cfg.batch_size, shuffle=cfg.shuffle, seed=seed, prefetch=cfg.prefetch
    )
    result = trainer.fit(train)
    test, reliability = task.evaluate_with_reliability(model, "test")
    return model, {
        "test": test,
        "valid": result.best_valid,
        "train": result.summary(),
        "params": sum(p.numel() for p in model.parameters()),
        "reliability": reliability,
        "curves": result.curves,
    }


@dataclass
class RankingExperiment:
    """A ranker and its baselines on one prepared data set (``dataset`` prepares or reuses it)."""

    dataset_factory: Callable[[], PreparedDataset]
    model: ModelRecipe
    baselines: list[ModelRecipe] = field(default_factory=list)
    kind: str = "ranking"
    dataset: PreparedDataset | None = None
    #: trains and tests the main model: :func:`train_and_test` in this process, or
    #: ``recsys.distributed``'s in Ray Train workers (the same signature)
    fit: Callable[..., tuple[nn.Module, dict[str, Any]]] = train_and_test

    def prepare(self) -> None:
        self.dataset = self.dataset_factory()

    def execute(self, plan: RunPlan, tracker: Tracker, prepare_seconds: float) -> Outcome:
        if self.dataset is None:
            self.prepare()
        dataset = self.dataset
        assert dataset is not None
        model, main = self.fit(
            self.model,
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
            "model": self.model.name,
            "test": main["test"],
            "valid": main["valid"],
            "train": main["train"] | {"parameters": main["params"]},
            "data": data,
            "reliability": main["reliability"],
        }
        if "distributed" in main:
            metrics["distributed"] = main["distributed"]
        baselines = {}
        for recipe in self.baselines:
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
        spec = json.dumps(dataset.spec.to_dict(), indent=2)
        return Outcome(model, metrics, {"feature_spec.json": spec}, curves=main["curves"])
