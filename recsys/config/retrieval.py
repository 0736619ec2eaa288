"""Builds the two-tower run (:class:`~recsys.train.retrieval_run.RetrievalExperiment`) of a
validated ``task: retrieval`` config.

The run reads ``data`` (the raw source only: ``preprocess`` and ``split`` are the rankers'),
``model`` (``configs/model/two_tower.yaml``: ``embedding`` and the towers under ``arch``), the
one ``trainer``, ``optimizer`` (the towers) and ``sparse_optimizer`` (the plain tables), and
``retrieval`` (groups ``configs/retrieval``: interactions, loss, ks, baselines, indexes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from recsys.config.build import (
    _container,
    build_dataclass,
    build_source,
    dense_optimizer_factory,
    sparse_optimizer_factory,
    trainer_config,
)
from recsys.config.schema import ConfigError
from recsys.data.retrieval_data import RetrievalData, RetrievalDataSpec
from recsys.data.source import RawSource
from recsys.models.two_tower import TwoTower, TwoTowerSettings, build_two_tower
from recsys.modules.embedding import EmbeddingConfig
from recsys.retrieval.evaluate import BASELINES
from recsys.retrieval.index import IndexConfig
from recsys.train.retrieval_run import RetrievalExperiment
from recsys.train.tasks.retrieval import RetrievalLossConfig
from recsys.train.trainer import resolve_device

__all__ = ["index_configs", "retrieval_experiment"]


def index_configs(indexes: Mapping[str, Any], path: str = "retrieval.indexes") -> list[IndexConfig]:
    """One :class:`IndexConfig` per entry of ``{name: settings}``: ``kind`` defaults to the
    name, and a name other than the kind labels the index."""
    out = []
    for name, values in indexes.items():
        values = dict(values or {})
        values.setdefault("kind", name)
        if name != values["kind"]:
            values.setdefault("name", name)
        try:
            out.append(IndexConfig.from_dict(values))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad index settings under '{path}.{name}': {e}") from None
    return out


def retrieval_experiment(cfg: DictConfig) -> RetrievalExperiment:
    """The :class:`RetrievalExperiment` of a validated config with ``task: retrieval``."""
    node = cfg.retrieval
    interactions = build_dataclass(RetrievalDataSpec, node.interactions, "retrieval.interactions")
    loss = build_dataclass(RetrievalLossConfig, node.loss, "retrieval.loss")
    ks = tuple(int(k) for k in node.ks)
    if 10 not in ks or any(k < 1 for k in ks):
        raise ConfigError(f"retrieval.ks must be positive and include 10, got {list(ks)}")
    baselines = dict(_container(node.baselines) or {})
    for name, kwargs in baselines.items():
        if name not in BASELINES:
            raise ConfigError(
                f"unknown retrieval baseline 'retrieval.baselines.{name}'; known: {list(BASELINES)}"
            )
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ConfigError(f"retrieval.baselines.{name} must be a mapping of settings")
    indexes = index_configs(dict(_container(node.indexes) or {}))
    trainer = trainer_config(cfg)
    settings = build_dataclass(TwoTowerSettings, cfg.model.arch, "model.arch")
    embedding = build_dataclass(EmbeddingConfig, cfg.model.embedding, "model.embedding")
    device = resolve_device(str(cfg.trainer.device))

    def build_model(data: RetrievalData) -> TwoTower:
        try:
            return build_two_tower(data, settings, embedding).to(device)
        except ValueError as e:
            raise ConfigError(f"bad 'model' for the two-tower: {e}") from None

    def source() -> RawSource:
        return build_source(cfg)[0]

    return RetrievalExperiment(
        source=source,
        interactions=interactions,
        build_model=build_model,
        dense_optimizer=dense_optimizer_factory(cfg),
        sparse_optimizer=sparse_optimizer_factory(cfg),
        trainer=trainer,
        loss=loss,
        ks=ks,
        baselines={k: dict(v or {}) for k, v in baselines.items()},
        indexes=indexes,
    )
