"""Dataclass schemas of the Hydra configs, so that a misspelled key is an error naming it.

Nodes that build objects through ``_target_`` (data sources, model architectures, optimizers)
are free-form here; their keys are checked when the object is built (an unexpected keyword is
reported with its config path by :func:`recsys.config.instantiate.instantiate_node`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from recsys.train.tracking import TrackingConfig
from recsys.train.trainer import TrainerConfig


class ConfigError(ValueError):
    """A configuration mistake; the message names the key."""


@dataclass
class PathsConfig:
    data_root: str = "data"
    output_root: str = "outputs"


@dataclass
class DataConfig:
    """A data set: where it is, how to read it, how to preprocess and split it."""

    name: str = MISSING
    path: str | None = None
    path_arg: str | None = "path"
    source: dict[str, Any] = MISSING
    preprocess: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    rebuild: bool = False


@dataclass
class ModelConfig:
    """A ranker: embedding settings plus the architecture node (``arch._target_``)."""

    name: str = MISSING
    embedding: dict[str, Any] = field(default_factory=dict)
    fused: bool = True
    # Fused kernel: auto (native PyTorch row-wise Adagrad on CPU, FBGEMM TBE on CUDA),
    # fbgemm or native. See recsys.modules.embedding.build_embeddings.
    kernel: str = "auto"
    arch: dict[str, Any] = MISSING


@dataclass
class EvaluateConfig:
    run_dir: str | None = None
    split: str = "test"


@dataclass
class RunConfig:
    """The root of ``recsys train``, ``recsys evaluate``, ``recsys data prepare``.

    ``task``: ``ranking`` (the rankers: ``model``, ``trainer``, prepared Parquet) or
    ``retrieval`` (the two-tower runner: the free-form ``retrieval`` node).
    """

    name: str = MISSING
    task: str = "ranking"
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig | None = None
    baseline: ModelConfig | None = None
    optimizer: dict[str, Any] = field(default_factory=dict)
    sparse_optimizer: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    # task: retrieval reads this node (checked by recsys.config.retrieval when built).
    retrieval: dict[str, Any] = field(default_factory=dict)


def validate(cfg: DictConfig | dict, schema: type = RunConfig) -> DictConfig:
    """Merges ``cfg`` onto ``schema``; unknown keys and wrong types raise :class:`ConfigError`."""
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, cfg)
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=False)
    except (ConfigKeyError, ConfigAttributeError) as e:
        key = getattr(e, "full_key", None) or str(e)
        raise ConfigError(f"unknown config key '{key}' (check its spelling)") from None
    except ValidationError as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"bad value for config key '{key}': {e.msg}") from None
    return merged  # type: ignore[return-value]
