"""Schema and request of ``recsys export export.run_dir=RUN`` (ranker or two-tower runs).

The request holds what the runner needs as plain objects: the run's data set (ranker) or its
retrieval experiment (two-tower), the model builder on CPU, the ANN index to build, the parity
settings and where the MLflow record of the run is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from recsys.config.build import build_source, dataset_factory, model_builder
from recsys.config.commands import kind_configs
from recsys.config.retrieval import retrieval_experiment
from recsys.config.runs import load_run_config
from recsys.config.schema import ConfigError, PathsConfig, validate
from recsys.data.prepared import PreparedDataset
from recsys.export.ranker import ExportSettings
from recsys.retrieval.index import IndexConfig
from recsys.train.retrieval_run import RetrievalExperiment
from recsys.types import FeatureSpec

__all__ = ["ExportCommandConfig", "ExportRequest", "export_request"]

TRAIN_ANY = "recsys train experiment=..."


@dataclass
class ExportSection:
    """``export.*`` (see ``configs/export.yaml``)."""

    run_dir: str | None = None
    out_dir: str | None = None
    parity_split: str = "test"
    parity_rows: int | None = 200_000
    tolerance: float = 1.0e-5
    index: str | None = None
    register: bool = True
    registered_name: str | None = None


@dataclass
class ExportCommandConfig:
    export: ExportSection = field(default_factory=ExportSection)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class ExportRequest:
    """A finished run to export. Ranker runs fill ``dataset`` / ``model``; two-tower runs fill
    ``retrieval`` / ``seed`` / ``index``."""

    run_dir: Path
    out_dir: Path
    task: str
    name: str
    settings: ExportSettings
    register: bool
    registered_name: str
    separators: dict[str, str]
    dataset: Callable[[], PreparedDataset] | None = None
    model: Callable[[FeatureSpec], nn.Module] | None = None
    retrieval: RetrievalExperiment | None = None
    seed: int = 0
    index: IndexConfig | None = None


def _index_config(run_cfg: DictConfig, kind: str | None) -> IndexConfig:
    """The run's ``retrieval.indexes`` entry of ``kind`` (default: hnsw if configured, else the
    first configured, else exact ``flat``)."""
    configured = [
        dict(v or {}).get("kind", k)
        for k, v in (OmegaConf.to_container(run_cfg.retrieval.indexes) or {}).items()
    ]
    if kind is None:
        kind = "hnsw" if "hnsw" in configured else (configured[0] if configured else "flat")
    return kind_configs(run_cfg, [kind], {})[0]


def export_request(cfg: DictConfig) -> ExportRequest:
    """The request of ``recsys export export.run_dir=RUN [export.out_dir=DIR]``."""
    cfg = validate(cfg, ExportCommandConfig)
    node = cfg.export
    run_cfg, run_dir = load_run_config(node.run_dir, "export.run_dir", None, TRAIN_ANY)
    if node.parity_split not in ("train", "valid", "test"):
        raise ConfigError(f"export.parity_split must be train, valid or test: {node.parity_split}")
    if node.parity_rows is not None and int(node.parity_rows) < 1:
        raise ConfigError(f"export.parity_rows must be >= 1 or null, got {node.parity_rows}")
    if not float(node.tolerance) > 0:
        raise ConfigError(f"export.tolerance must be > 0, got {node.tolerance}")
    run_cfg.trainer.device = "cpu"  # exported graphs are traced on CPU
    source, _ = build_source(run_cfg)
    common: dict[str, Any] = {
        "run_dir": run_dir,
        "out_dir": Path(node.out_dir) if node.out_dir else run_dir / "export",
        "task": str(run_cfg.task),
        "name": str(run_cfg.name),
        "settings": ExportSettings(
            parity_split=str(node.parity_split),
            parity_rows=None if node.parity_rows is None else int(node.parity_rows),
            tolerance=float(node.tolerance),
        ),
        "register": bool(node.register),
        "registered_name": str(node.registered_name or f"recsys-{run_cfg.name}"),
        "separators": dict(getattr(source, "multi_separators", {}) or {}),
    }
    if run_cfg.task == "retrieval":
        return ExportRequest(
            **common,
            retrieval=retrieval_experiment(run_cfg),
            seed=int(run_cfg.seed),
            index=_index_config(run_cfg, node.index),
        )
    if node.index is not None:
        raise ConfigError("export.index is for two-tower runs; this is a ranker run")
    make, _ = dataset_factory(run_cfg)
    return ExportRequest(
        **common, dataset=make, model=model_builder(run_cfg.model, run_cfg, "model")
    )
