"""``recsys train`` / ``recsys quickstart`` (a run of either task) and ``recsys data prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from recsys.apps.summaries import run_lines
from recsys.config.build import dataset_factory
from recsys.config.plan import plan_from_config
from recsys.config.schema import validate
from recsys.train.run import run_experiment_with_model

__all__ = ["prepare", "train", "train_with_model"]


def train(cfg: Any, run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Trains and tests the run of ``cfg`` into ``run_dir``: ``(metrics, printed lines)``."""
    metrics, _, lines = train_with_model(cfg, run_dir)
    return metrics, lines


def train_with_model(cfg: Any, run_dir: Path) -> tuple[dict[str, Any], nn.Module, list[str]]:
    """:func:`train`, also returning the trained model: ``(metrics, model, printed lines)``."""
    metrics, model = run_experiment_with_model(plan_from_config(validate(cfg), run_dir))
    return metrics, model, run_lines(metrics, run_dir / "metrics.json")


def prepare(cfg: Any) -> list[str]:
    """Reads, preprocesses and splits ``cfg.data`` to Parquet (or finds it cached)."""
    cfg = validate(cfg)
    make, _ = dataset_factory(cfg)
    dataset = make()
    spec = dataset.spec
    rows = {s: dataset.num_rows(s) for s in ("train", "valid", "test")}
    skipped = dataset.manifest.get("read_report", {}).get("rows_skipped", 0)
    return [
        f"{cfg.data.name}: rows {rows}, skipped bad rows {skipped}",
        f"features: {spec.num_dense} dense, {len(spec.sparse)} sparse, labels {list(spec.labels)}",
        f"prepared: {dataset.root}",
    ]
