"""Builds the :class:`~recsys.train.retrieval_experiment.RetrievalPlan` of a retrieval config.

A run with ``task: retrieval`` reads ``data`` (the raw source only: its ``preprocess`` and
``split`` settings are for the rankers) and the free-form ``retrieval`` node, checked here::

    retrieval:
      data: {user, item, timestamp, order, user_features, item_features,
             item_multi_features, positive_labels, fractions, min_interactions}
      history_len: 50
      model: {embedding_dim, per_table, user_mlp, item_mlp, output_dim, temperature,
              learn_temperature, min_temperature, max_temperature, dropout}
      trainer: {...}           # RetrievalTrainerConfig fields (device defaults to trainer.device)
      ks: [10, 20, 50, 100]
      baselines: {most_popular: {}, als: {factors: 64, iterations: 15, ...}}
      indexes: [{kind: flat}, {kind: hnsw, ...}]   # recsys.retrieval.index.IndexConfig keys
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recsys.config.build import _container, build_dataclass, build_source
from recsys.config.schema import ConfigError
from recsys.data.source import RawSource
from recsys.train.retrieval import RetrievalTrainerConfig
from recsys.train.retrieval_data import RetrievalDataSpec
from recsys.train.retrieval_experiment import RetrievalPlan, TwoTowerSettings
from recsys.train.schedule import ScheduleConfig
from recsys.train.tracking import TrackingConfig

RETRIEVAL_KEYS = ("data", "history_len", "model", "trainer", "ks", "baselines", "indexes")
BASELINES = ("most_popular", "als")


def retrieval_plan_from_config(cfg: DictConfig, run_dir: Path) -> RetrievalPlan:
    """The :class:`RetrievalPlan` of a validated config with ``task: retrieval``."""
    node: dict[str, Any] = dict(_container(cfg.retrieval) or {})
    unknown = sorted(set(node) - set(RETRIEVAL_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown config key 'retrieval.{unknown[0]}'; known keys: {list(RETRIEVAL_KEYS)}"
        )
    data_values = dict(node.get("data") or {})
    if "history_len" in node:
        data_values["history_len"] = node["history_len"]
    data = build_dataclass(RetrievalDataSpec, data_values, "retrieval.data")
    model = build_dataclass(TwoTowerSettings, node.get("model"), "retrieval.model")
    trainer_values = dict(node.get("trainer") or {})
    trainer_values.setdefault("device", str(cfg.trainer.device))
    trainer_values.setdefault("seed", int(cfg.seed))
    if isinstance(trainer_values.get("schedule"), dict):
        trainer_values["schedule"] = build_dataclass(
            ScheduleConfig, trainer_values["schedule"], "retrieval.trainer.schedule"
        )
    trainer = build_dataclass(RetrievalTrainerConfig, trainer_values, "retrieval.trainer")
    ks = tuple(int(k) for k in node.get("ks") or (10, 20, 50, 100))
    if 10 not in ks or any(k < 1 for k in ks):
        raise ConfigError(f"retrieval.ks must be positive and include 10, got {list(ks)}")
    baselines = dict(node.get("baselines") or {})
    for name, kwargs in baselines.items():
        if name not in BASELINES:
            raise ConfigError(f"unknown retrieval baseline 'retrieval.baselines.{name}'")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ConfigError(f"retrieval.baselines.{name} must be a mapping of settings")
    indexes = list(node.get("indexes") or [])
    for i, index in enumerate(indexes):
        if not isinstance(index, dict) or "kind" not in index:
            raise ConfigError(f"retrieval.indexes[{i}] must be a mapping with a 'kind'")
    tracking: TrackingConfig = OmegaConf.to_object(cfg.tracking)  # type: ignore[assignment]
    if tracking.run_name is None:
        tracking.run_name = str(cfg.name)

    def source() -> RawSource:
        return build_source(cfg)[0]

    return RetrievalPlan(
        name=str(cfg.name),
        run_dir=run_dir,
        output_root=Path(cfg.paths.output_root),
        seed=int(cfg.seed),
        source=source,
        data=data,
        model=model,
        trainer=trainer,
        ks=ks,
        indexes=indexes,
        baselines={k: dict(v or {}) for k, v in baselines.items()},
        tracking=tracking,
        params=_container(cfg),
        resolved_config=OmegaConf.to_yaml(cfg, resolve=True),
    )
