"""Hydra task functions of ``recsys index build`` and ``recsys explore``: parse, call, print."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys.config.explore import explore_run, index_build


def index_task(cfg: DictConfig) -> None:
    """``recsys index build index.run_dir=DIR [index.kind=hnsw|[flat,hnsw]]``."""
    _, lines = index_build(cfg)
    print("\n".join(lines), flush=True)


def explore_task(cfg: DictConfig) -> None:
    """``recsys explore explore.ranker_run=DIR explore.retrieval_run=DIR [explore.user=ID]``."""
    _, lines = explore_run(cfg, Path(HydraConfig.get().runtime.output_dir))
    print("\n".join(lines), flush=True)
