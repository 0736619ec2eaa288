"""Hydra task functions behind the ``recsys`` commands: each calls one runner of
:mod:`recsys.apps` with the composed config and prints its lines."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys.apps.evaluate import evaluate_run
from recsys.apps.explore import explore_run
from recsys.apps.export import export_run
from recsys.apps.index import index_build
from recsys.apps.train import prepare, train
from recsys.cli.errors import command

#: The closing lines also go to the run's log file (``<run>/recsys.log``; hydra/job_logging).
summary_log = logging.getLogger("recsys.summary")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _print(lines: list[str]) -> None:
    print("\n".join(lines), flush=True)
    for line in lines:
        summary_log.info(line)


@command
def train_task(cfg: DictConfig) -> None:
    """``recsys train`` / ``recsys quickstart``: one run, summary printed last."""
    _print(train(cfg, _run_dir())[1])


@command
def prepare_task(cfg: DictConfig) -> None:
    """``recsys data prepare``: read, preprocess and split; print where it went."""
    _print(prepare(cfg))


@command
def evaluate_task(cfg: DictConfig) -> None:
    """``recsys evaluate evaluate.run_dir=DIR [evaluate.split=test]``: re-score a saved run."""
    _print(evaluate_run(cfg)[1])


@command
def index_task(cfg: DictConfig) -> None:
    """``recsys index build index.run_dir=DIR [index.kind=hnsw|[flat,hnsw]]``."""
    _print(index_build(cfg)[1])


@command
def explore_task(cfg: DictConfig) -> None:
    """``recsys explore explore.ranker_run=DIR explore.retrieval_run=DIR [explore.user=ID]``."""
    _print(explore_run(cfg, _run_dir())[1])


@command
def export_task(cfg: DictConfig) -> None:
    """``recsys export export.run_dir=DIR``: ONNX models + manifest for serving."""
    _print(export_run(cfg)[1])
