"""Schemas and builders of the commands that read finished runs: ``recsys evaluate``,
``recsys index build`` and ``recsys explore``.

Each builder validates its command's config, opens the run folders it names
(:func:`recsys.config.runs.load_run_config`, which also upgrades older runs) and returns a plain
request object; the command runners in :mod:`recsys.apps` do the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from recsys.config.build import (
    _container,
    build_dataclass,
    build_source,
    dataset_factory,
    model_builder,
)
from recsys.config.retrieval import index_configs, retrieval_experiment
from recsys.config.runs import load_run_config
from recsys.config.schema import ConfigError, PathsConfig, validate
from recsys.data.prepared import PreparedDataset
from recsys.data.source import RawSource
from recsys.ranking import DiversityRules, StageSizes, ValueFormula
from recsys.ranking.social_explore import ExploreSettings
from recsys.retrieval.index import IndexConfig
from recsys.train.retrieval_run import RetrievalExperiment
from recsys.train.trainer import resolve_device
from recsys.types import FeatureSpec

__all__ = [
    "EvaluateRequest",
    "ExploreCommandConfig",
    "ExploreRequest",
    "IndexCommandConfig",
    "IndexRequest",
    "evaluate_request",
    "explore_request",
    "index_request",
]

TRAIN_RETRIEVAL = "recsys train experiment=two_tower_social"
TRAIN_RANKER = "recsys train experiment=multitask_social"
TRAIN_ANY = "recsys train experiment=..."


@dataclass
class IndexSection:
    """``index.*``: the run folder, the kind(s) to build, extra IndexConfig keys per kind."""

    run_dir: str | None = None
    kind: Any = "hnsw"
    options: dict[str, Any] = field(default_factory=dict)
    k: int = 10


@dataclass
class IndexCommandConfig:
    index: IndexSection = field(default_factory=IndexSection)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class ExploreSection:
    """``explore.*`` (see ``configs/explore.yaml``)."""

    ranker_run: str | None = None
    retrieval_run: str | None = None
    user: int | None = None
    n_users: int = 3
    index: str = "hnsw"
    sizes: dict[str, Any] = field(default_factory=dict)
    quotas: dict[str, Any] | None = None
    value: dict[str, Any] = field(default_factory=dict)
    diversity: dict[str, Any] = field(default_factory=dict)
    popular_window_s: int = 2 * 86_400
    item2item_recent: int = 5
    cold_start: bool = False
    evaluate: bool = False
    eval_users: int = 50


@dataclass
class ExploreCommandConfig:
    explore: ExploreSection = field(default_factory=ExploreSection)
    paths: PathsConfig = field(default_factory=PathsConfig)


def _source_settings(cfg: DictConfig) -> dict[str, Any]:
    """The data source settings that decide the rows (chunking does not)."""
    source = dict(_container(cfg.data.source) or {})
    inner = dict(source.get("config") or {})
    inner.pop("chunk_rows", None)
    source["config"] = inner
    return source


def _check_same_data(ranker: DictConfig, retrieval: DictConfig) -> None:
    a, b = _source_settings(ranker), _source_settings(retrieval)
    if a.get("_target_") != "recsys.data.synthetic.SocialSource":
        raise ConfigError(
            f"explore.ranker_run: the run's data is {a.get('_target_')!r}; explore needs the "
            f"synthetic social app (e.g. `{TRAIN_RANKER}`)"
        )
    if a != b:
        keys = sorted(
            k
            for k in set(a["config"]) | set(b["config"])
            if a["config"].get(k) != b["config"].get(k)
        ) or sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        diff = ", ".join(f"{k}: {a['config'].get(k)} vs {b['config'].get(k)}" for k in keys)
        raise ConfigError(
            "explore.ranker_run and explore.retrieval_run were trained on different data "
            f"(data.source.config differs in {diff}); train both with the same data settings"
        )


def _settings(node: DictConfig) -> ExploreSettings:
    value = dict(_container(node.value) or {})
    quotas = _container(node.quotas)
    try:
        return ExploreSettings(
            sizes=build_dataclass(StageSizes, node.sizes, "explore.sizes"),
            quotas={str(k): int(v) for k, v in quotas.items()} if quotas else None,
            value=build_dataclass(ValueFormula, value, "explore.value"),
            diversity=build_dataclass(DiversityRules, node.diversity, "explore.diversity"),
            popular_window_s=int(node.popular_window_s),
            item2item_recent=int(node.item2item_recent),
            cold_start=bool(node.cold_start),
        )
    except ValueError as e:
        raise ConfigError(f"bad explore settings: {e}") from None


# -- recsys index build ------------------------------------------------------------------------
@dataclass
class IndexRequest:
    """A two-tower run and the indexes to build over its item vectors."""

    run_dir: Path
    run_name: str
    seed: int
    experiment: RetrievalExperiment
    configs: list[IndexConfig]
    k: int


def _run_indexes(run_cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """The run's ``retrieval.indexes`` by kind (the settings it was tested with)."""
    configured = dict(_container(run_cfg.retrieval.indexes) or {})
    return {
        dict(v or {}).get("kind", k): {"kind": k, **dict(v or {})} for k, v in configured.items()
    }


def kind_configs(
    run_cfg: DictConfig, kinds: list[str], options: dict[str, Any]
) -> list[IndexConfig]:
    """One IndexConfig per kind: the run's ``retrieval.indexes`` entry of that kind (if any),
    then ``options[kind]`` on top."""
    configured = _run_indexes(run_cfg)
    values = {
        kind: {**configured.get(kind, {"kind": kind}), **dict(options.get(kind) or {})}
        for kind in kinds
    }
    for v in values.values():
        v.pop("name", None)
    return index_configs(values, "index")


def index_request(cfg: DictConfig) -> IndexRequest:
    """The request of ``recsys index build index.run_dir=DIR [index.kind=...]``."""
    cfg = validate(cfg, IndexCommandConfig)
    node = cfg.index
    run_cfg, run_dir = load_run_config(node.run_dir, "index.run_dir", "retrieval", TRAIN_RETRIEVAL)
    kinds = _container(node.kind)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if not kinds:
        raise ConfigError("index.kind must name at least one kind, e.g. index.kind=hnsw")
    options = _container(node.options) or {}
    unknown = set(options) - set(kinds)
    if unknown:
        raise ConfigError(f"index.options names kinds not built: {sorted(unknown)}")
    return IndexRequest(
        run_dir=run_dir,
        run_name=str(run_cfg.name),
        seed=int(run_cfg.seed),
        experiment=retrieval_experiment(run_cfg),
        configs=kind_configs(run_cfg, kinds, options),
        k=int(node.k),
    )


# -- recsys explore ----------------------------------------------------------------------------
@dataclass
class ExploreRequest:
    """A ranker run and a two-tower run on the same synthetic data, and the funnel's settings."""

    ranker_dir: Path
    retrieval_dir: Path
    ranker_model: Callable[[FeatureSpec], nn.Module]
    ranker_source: Callable[[], RawSource]
    split_fractions: tuple[float, ...]
    retrieval: RetrievalExperiment
    retrieval_seed: int
    index_kind: str
    index_config: IndexConfig
    settings: ExploreSettings
    user: int | None
    n_users: int
    evaluate: bool
    eval_users: int
    report_settings: dict[str, Any] = field(default_factory=dict)


def explore_request(cfg: DictConfig) -> ExploreRequest:
    """The request of ``recsys explore explore.ranker_run=DIR explore.retrieval_run=DIR``."""
    cfg = validate(cfg, ExploreCommandConfig)
    node = cfg.explore
    if not node.ranker_run or not node.retrieval_run:
        raise ConfigError(
            "explore.ranker_run and explore.retrieval_run are required: train the two runs "
            f"first on the same data (`{TRAIN_RANKER}` and `{TRAIN_RETRIEVAL}`, e.g. the "
            "*_tiny experiments) and pass their folders"
        )
    rank_cfg, rank_dir = load_run_config(
        node.ranker_run, "explore.ranker_run", "ranking", TRAIN_RANKER
    )
    ret_cfg, ret_dir = load_run_config(
        node.retrieval_run, "explore.retrieval_run", "retrieval", TRAIN_RETRIEVAL
    )
    _check_same_data(rank_cfg, ret_cfg)
    split = dict(_container(rank_cfg.data.split) or {})
    if split.get("kind", "temporal") != "temporal":
        raise ConfigError("explore.ranker_run: the ranker's data.split.kind must be temporal")
    kind = str(node.index)
    return ExploreRequest(
        ranker_dir=rank_dir,
        retrieval_dir=ret_dir,
        ranker_model=model_builder(rank_cfg.model, rank_cfg, "model"),
        ranker_source=lambda: build_source(rank_cfg)[0],
        split_fractions=tuple(split.get("fractions", (0.8, 0.1, 0.1))),
        retrieval=retrieval_experiment(ret_cfg),
        retrieval_seed=int(ret_cfg.seed),
        index_kind=kind,
        index_config=kind_configs(ret_cfg, [kind], {})[0],
        settings=_settings(node),
        user=None if node.user is None else int(node.user),
        n_users=int(node.n_users),
        evaluate=bool(node.evaluate),
        eval_users=int(node.eval_users),
        report_settings={
            "sizes": _container(node.sizes),
            "diversity": _container(node.diversity),
        },
    )


# -- recsys evaluate ---------------------------------------------------------------------------
@dataclass
class EvaluateRequest:
    """A finished run of either task and the split to score it on.

    Ranker runs fill ``dataset`` / ``model`` / ``eval_batch_size`` / ``device``; two-tower runs
    fill ``retrieval`` and ``seed``."""

    run_dir: Path
    task: str
    split: str
    dataset: Callable[[], PreparedDataset] | None = None
    model: Callable[[FeatureSpec], nn.Module] | None = None
    eval_batch_size: int = 16384
    device: str = "cpu"
    retrieval: RetrievalExperiment | None = None
    seed: int = 0


def evaluate_request(cfg: DictConfig) -> EvaluateRequest:
    """The request of ``recsys evaluate evaluate.run_dir=DIR [evaluate.split=test]``."""
    cfg = validate(cfg)
    run_cfg, run_dir = load_run_config(cfg.evaluate.run_dir, "evaluate.run_dir", None, TRAIN_ANY)
    split = str(cfg.evaluate.split)
    allowed = ("valid", "test") if run_cfg.task == "retrieval" else ("train", "valid", "test")
    if split not in allowed:
        raise ConfigError(
            f"evaluate.split must be one of {list(allowed)} for a {run_cfg.task} run, got {split!r}"
        )
    if run_cfg.task == "retrieval":
        return EvaluateRequest(
            run_dir,
            "retrieval",
            split,
            retrieval=retrieval_experiment(run_cfg),
            seed=int(run_cfg.seed),
        )
    make, _ = dataset_factory(run_cfg)
    return EvaluateRequest(
        run_dir,
        "ranking",
        split,
        dataset=make,
        model=model_builder(run_cfg.model, run_cfg, "model"),
        eval_batch_size=int(run_cfg.trainer.eval_batch_size),
        device=str(resolve_device(str(run_cfg.trainer.device))),
    )
