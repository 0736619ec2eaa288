"""One training run, whatever the task: the plan, its start and its ending.

The config layer turns a Hydra config into a :class:`RunPlan` of plain objects; this module
knows nothing of Hydra. The plan's ``experiment`` says what is trained
(:class:`recsys.train.ranking_run.RankingExperiment`,
:class:`recsys.train.retrieval_run.RetrievalExperiment`); :func:`run_experiment` does what
every run does around it:

1. seeds Python, NumPy and torch, prepares the data (timed);
2. starts the MLflow run (params = the flattened config) and writes ``config.resolved.yaml``;
3. lets the experiment train and test (checkpoints under ``checkpoints/``);
4. writes ``model.pt``, the experiment's own files, ``metrics.json``, ``curves.json`` (the
   learning curves) and the run's plots (:mod:`recsys.train.plots`: learning curves,
   reliability diagrams, AUC vs best achievable, Recall@K, recall vs QPS), logs the test
   metrics, these files and the model to MLflow, and closes the run (``FAILED`` on an
   exception). A plot that cannot be drawn is a warning, not a failed run.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from recsys.train.plots import run_plots
from recsys.train.tracking import Tracker, TrackingConfig, numeric_metrics

__all__ = [
    "Experiment",
    "Outcome",
    "RunPlan",
    "run_experiment",
    "run_experiment_with_model",
    "seed_everything",
]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Outcome:
    """What an experiment hands back: the trained model, ``metrics.json``'s content (with at
    least ``test``), extra files to write into the run folder (name -> text) and the learning
    curves (:attr:`recsys.train.trainer.FitResult.curves`)."""

    model: nn.Module
    metrics: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Experiment(Protocol):
    """What one run trains. ``prepare`` reads the data (timed as ``prepare_seconds``);
    ``execute`` trains, tests and returns the outcome, logging what it likes to ``tracker``."""

    kind: str

    def prepare(self) -> None: ...

    def execute(self, plan: RunPlan, tracker: Tracker, prepare_seconds: float) -> Outcome: ...


@dataclass
class RunPlan:
    """Everything one run needs, as plain objects."""

    name: str
    run_dir: Path
    output_root: Path
    seed: int
    experiment: Experiment
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    params: Mapping[str, Any] = field(default_factory=dict)
    resolved_config: str = ""


def _plots(run_dir: Path, metrics: dict[str, Any], curves: dict[str, Any]) -> list[Path]:
    try:
        return run_plots(run_dir, metrics, curves, metrics.get("reliability"))
    except Exception as exc:  # a picture is not worth a failed run
        log.warning("plots not written: %s: %s", type(exc).__name__, exc)
        return []


def run_experiment(plan: RunPlan) -> dict[str, Any]:
    """Runs ``plan`` (see the module docstring); returns (and writes) ``metrics.json``'s content
    plus the MLflow ``run_id``."""
    return run_experiment_with_model(plan)[0]


def run_experiment_with_model(plan: RunPlan) -> tuple[dict[str, Any], nn.Module]:
    """:func:`run_experiment`, also returning the trained model (the Python API's run)."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(plan.seed)
    t0 = time.perf_counter()
    plan.experiment.prepare()
    prepare_seconds = time.perf_counter() - t0
    tracker = Tracker(plan.tracking, plan.output_root)
    tracker.start(plan.params)
    status = "FAILED"
    try:
        tracker.record_config(plan.run_dir, plan.resolved_config)
        outcome = plan.experiment.execute(plan, tracker, prepare_seconds)
        metrics = {"task": plan.experiment.kind, **outcome.metrics}
        # where the MLflow record is, so that later commands (export) add to the same run
        metrics["run_id"] = tracker.run_id
        metrics["tracking_uri"] = tracker.tracking_uri if tracker.run_id else None
        torch.save(outcome.model.state_dict(), plan.run_dir / "model.pt")
        for name, text in outcome.files.items():
            (plan.run_dir / name).write_text(text)
        metrics_path = plan.run_dir / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2, default=float))
        curves_path = plan.run_dir / "curves.json"
        curves_path.write_text(json.dumps(outcome.curves, indent=2, default=float))
        tracker.log_metrics(numeric_metrics(metrics["test"], "test"))
        for path in [metrics_path, curves_path, *_plots(plan.run_dir, metrics, outcome.curves)]:
            tracker.log_artifact(path)
        tracker.log_model(outcome.model)
        status = "FINISHED"
        return metrics, outcome.model
    finally:
        tracker.end(status)
