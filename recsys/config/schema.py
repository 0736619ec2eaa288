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

from recsys.data.retrieval_data import RetrievalDataSpec
from recsys.train.tasks.retrieval import RetrievalLossConfig
from recsys.train.tracking import TrackingConfig
from recsys.train.trainer import TrainerConfig


class ConfigError(ValueError):
    """A configuration mistake; the message names the key."""


@dataclass
class PathsConfig:
    """``paths`` (group ``configs/paths``): where data and outputs go. ``runs`` / ``sweeps``:
    a command's run and multirun folders under ``output_root`` (the hydra/output group)."""

    data_root: str = "data"
    output_root: str = "outputs"
    runs: str = "runs"
    sweeps: str = "multirun"


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
class RetrievalConfig:
    """``retrieval`` (group ``configs/retrieval``), read by ``task: retrieval`` only.

    ``interactions``: which columns mean what, the per-user split, the history length;
    ``loss``: the two-tower's objective; ``ks``: metric cut-offs (must include 10);
    ``baselines``: ``{most_popular: {}, als: {ImplicitMF keys}}`` (group
    ``retrieval/baselines``, several at once); ``indexes``: ``{name: IndexConfig keys}``, the
    ANN indexes tested on the test users (group ``retrieval/indexes``; ``kind`` defaults to the
    name).
    """

    interactions: RetrievalDataSpec = field(default_factory=RetrievalDataSpec)
    loss: RetrievalLossConfig = field(default_factory=RetrievalLossConfig)
    ks: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class EvaluateConfig:
    run_dir: str | None = None
    split: str = "test"


@dataclass
class RunConfig:
    """The root of ``recsys train``, ``recsys evaluate``, ``recsys data prepare``.

    ``task``: ``ranking`` (the rankers on prepared Parquet) or ``retrieval`` (the two-tower
    on in-memory interactions, configured by ``retrieval``). Both train with the one
    ``trainer``, ``optimizer`` and ``sparse_optimizer``; ``model`` is a ranker or
    ``two_tower``.
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
    retrieval: RetrievalConfig | None = None


def known_keys_text(error: Exception) -> str:
    """``"; known keys there: a, b"`` from an OmegaConf key error (``""`` when unknown)."""
    parent = getattr(error, "parent_node", None)
    if parent is None or not hasattr(parent, "keys"):
        return " (check its spelling)"
    return f"; known keys there: {', '.join(sorted(str(k) for k in parent))}"


def validate(cfg: DictConfig | dict, schema: type = RunConfig) -> DictConfig:
    """Merges ``cfg`` onto ``schema``; unknown keys and wrong types raise :class:`ConfigError`."""
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, cfg)
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=False)
    except (ConfigKeyError, ConfigAttributeError) as e:
        key = getattr(e, "full_key", None) or str(e)
        raise ConfigError(f"unknown config key '{key}'{known_keys_text(e)}") from None
    except ValidationError as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"bad value for config key '{key}': {e.msg}") from None
    return merged  # type: ignore[return-value]
