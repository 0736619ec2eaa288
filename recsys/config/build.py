"""Builds the objects a run needs from a validated Hydra config.

The data path is resolved against the data root, the data settings fingerprinted (the
prepared Parquet is cached by fingerprint); model, optimizers and trainer settings become plain
factories. :mod:`recsys.config.plan` assembles them into a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from recsys.config.instantiate import instantiate_node
from recsys.config.schema import ConfigError
from recsys.data.prepared import PreparedDataset, prepare
from recsys.data.preprocess import PreprocessConfig
from recsys.data.source import RawSource
from recsys.data.split import SplitConfig
from recsys.modules.embedding import (
    FUSED_KERNELS,
    EmbeddingConfig,
    build_embeddings,
    embedding_tables,
)
from recsys.train.optimizers import OptimizerFactory
from recsys.train.optimizers import sparse_optimizer_factory as registry_factory
from recsys.train.ranking_run import ModelRecipe
from recsys.train.trainer import TrainerConfig, resolve_device
from recsys.types import FeatureSpec

# Bump when the prepared-data layout changes, so old caches are rebuilt rather than misread.
PREPARED_FORMAT_VERSION = 1


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_dataclass(cls: type, values: Any, path: str) -> Any:
    """``cls(**values)`` with unknown keys reported as ``path.key``."""
    values = dict(_container(values) or {})
    fields = getattr(cls, "__dataclass_fields__", {})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{path}.{unknown[0]}'; known keys: {sorted(fields)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad value under '{path}': {e}") from None


def resolve_data_path(path: str | None, data_root: str | Path) -> Path | None:
    """A data path as given if it exists (absolute or relative to the working directory),
    else relative to the data root."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.exists():
        return p.resolve()
    candidate = Path(data_root).expanduser() / p
    if candidate.exists():
        return candidate.resolve()
    hint = ""
    if p.name.startswith("ml-"):
        hint = (
            f"; MovieLens is not bundled: unzip {p.name}.zip from "
            "https://grouplens.org/datasets/movielens/ there"
        )
    raise ConfigError(
        f"data.path '{path}' not found: looked at {p.resolve()} and {candidate.resolve()} "
        f"(set data.path to a file or folder, or the data root with RECSYS_DATA_ROOT){hint}"
    )


def _stat_files(path: Path | None) -> list[tuple[str, int, int]]:
    if path is None:
        return []
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    return [(str(f), f.stat().st_size, int(f.stat().st_mtime)) for f in files]


def data_fingerprint(data_cfg: dict[str, Any], path: Path | None) -> str:
    """Hash of the data settings and the input files' names, sizes and times."""
    settings = {k: v for k, v in data_cfg.items() if k not in ("rebuild", "cache_dir")}
    blob = json.dumps(
        {"v": PREPARED_FORMAT_VERSION, "settings": settings, "files": _stat_files(path)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def build_source(cfg: DictConfig) -> tuple[RawSource, Path | None]:
    """The raw source of ``cfg.data`` and its resolved path."""
    data = cfg.data
    path = resolve_data_path(data.path, cfg.paths.data_root)
    kwargs: dict[str, Any] = {}
    if data.path_arg:
        if path is None:
            raise ConfigError(f"data set '{data.name}' needs data.path (a file or folder)")
        kwargs[data.path_arg] = str(path)
    return instantiate_node(data.source, "data.source", **kwargs), path


def _split_values(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """``data.split`` with ``kind: auto`` resolved: temporal when the source names a
    timestamp column, random otherwise."""
    values = dict(_container(data_cfg.get("split")) or {})
    if values.get("kind") == "auto":
        timestamp = (data_cfg.get("source") or {}).get("timestamp")
        values["kind"] = "temporal" if timestamp else "random"
    return values


def dataset_factory(cfg: DictConfig) -> tuple[Callable[[], PreparedDataset], Path]:
    """A function that prepares (or reuses) the data set, and the folder it lands in."""
    data_cfg = _container(cfg.data)
    path = resolve_data_path(cfg.data.path, cfg.paths.data_root)
    fingerprint = data_fingerprint(data_cfg, path)
    cache = (
        Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.paths.data_root) / "prepared"
    )
    out_dir = (cache / f"{cfg.data.name}-{fingerprint[:12]}").resolve()
    preprocess = build_dataclass(PreprocessConfig, data_cfg.get("preprocess"), "data.preprocess")
    split = build_dataclass(SplitConfig, _split_values(data_cfg), "data.split")

    def make() -> PreparedDataset:
        source, _ = build_source(cfg)
        return prepare(
            source,
            out_dir,
            preprocess,
            split,
            fingerprint=fingerprint,
            overwrite=bool(cfg.data.rebuild),
        )

    return make, out_dir


def dense_optimizer_factory(cfg: DictConfig) -> OptimizerFactory:
    node = _container(cfg.optimizer)
    if not node:
        raise ConfigError("config key 'optimizer' is empty: choose one, e.g. optimizer=adam")
    node = {**node, "_partial_": True}
    partial = instantiate_node(node, "optimizer")

    def make(params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
        return partial(params)

    return make


def sparse_optimizer_factory(cfg: DictConfig) -> OptimizerFactory:
    """The optimizer for embeddings that are *not* fused (``model.fused=false``), from the one
    registry :data:`recsys.train.optimizers.SPARSE_OPTIMIZERS`."""
    try:
        make = registry_factory(dict(_container(cfg.sparse_optimizer) or {}))
    except ValueError as e:
        raise ConfigError(str(e)) from None

    def checked(params: Sequence[nn.Parameter] | Sequence[dict]) -> torch.optim.Optimizer:
        try:
            return make(params)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    return checked


def fused_kernel(name: str, device: torch.device, path: str) -> str:
    """The fused embedding kernel for ``model.kernel``: ``auto`` picks the native PyTorch
    kernel on CPU (its row-wise Adagrad backward is ~2.5x faster than FBGEMM's CPU one, see
    benchmarks/train_throughput.py) and FBGEMM's TBE on CUDA."""
    if name == "auto":
        return "native" if device.type == "cpu" else "fbgemm"
    if name not in FUSED_KERNELS:
        raise ConfigError(
            f"'{path}.kernel' must be auto or one of {list(FUSED_KERNELS)}, got {name!r}"
        )
    if name == "native" and device.type != "cpu":
        raise ConfigError(f"'{path}.kernel=native' runs on CPU only; the device is {device}")
    return name


def model_builder(
    model_cfg: DictConfig, cfg: DictConfig, path: str, *, shardable: bool = False
) -> Callable[[FeatureSpec], nn.Module]:
    """A function ``FeatureSpec -> model`` for the model node at ``path``.

    ``shardable``: the same model on CPU with plain TorchRec tables, the form
    ``recsys.distributed`` shards (it fuses the sparse optimizer into the sharded tables)."""
    emb_cfg = build_dataclass(EmbeddingConfig, model_cfg.embedding, f"{path}.embedding")
    fused = bool(model_cfg.fused) and not shardable
    device = torch.device("cpu") if shardable else resolve_device(str(cfg.trainer.device))
    kernel = fused_kernel(str(model_cfg.kernel), device, path)
    sparse_opt = dict(_container(cfg.sparse_optimizer) or {})
    arch = _container(model_cfg.arch)

    def build(spec: FeatureSpec) -> nn.Module:
        try:
            tables = embedding_tables(spec, emb_cfg)
        except ValueError as e:
            raise ConfigError(f"bad '{path}.embedding': {e}") from None
        embeddings = build_embeddings(
            tables,
            fused=fused,
            optimizer=sparse_opt if fused else None,
            device=device,
            kernel=kernel,
        )
        model = instantiate_node(arch, f"{path}.arch", feature_spec=spec, embeddings=embeddings)
        return model.to(device)

    return build


def recipe(
    model_cfg: DictConfig, cfg: DictConfig, path: str, trainer: TrainerConfig
) -> ModelRecipe:
    return ModelRecipe(
        name=str(model_cfg.name),
        build=model_builder(model_cfg, cfg, path),
        dense_optimizer=dense_optimizer_factory(cfg),
        sparse_optimizer=None if model_cfg.fused else sparse_optimizer_factory(cfg),
        trainer=trainer,
        shardable_build=model_builder(model_cfg, cfg, path, shardable=True),
        sparse_optimizer_spec=dict(_container(cfg.sparse_optimizer) or {}),
    )


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    return OmegaConf.to_object(cfg.trainer)  # type: ignore[return-value]
