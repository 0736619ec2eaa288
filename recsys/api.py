"""The Python API: the ``recsys`` commands as functions, for notebooks and scripts.

Each function takes the same Hydra overrides as the command (``recsys train ...``) and returns
what the command wrote, as Python objects; what a notebook imports from here is what we
promise. Outputs go where the command puts them (``outputs/``, or ``$RECSYS_OUTPUT_ROOT``)
unless ``run_dir`` / ``out_dir`` is given.

Train a ranker and look at it::

    from recsys import api

    run = api.train(["experiment=dlrm_movielens_tiny", "data.path=/data/ml-100k"])
    run.metrics["test"]["auc"]          # metrics.json's content
    run.model                           # the trained torch module
    run.plots                           # [.../learning_curves.png, .../reliability.png]
    print(run.summary())                # the lines `recsys train` prints

Re-score it, export it for serving, reopen it later::

    api.evaluate(run, split="valid")    # {"auc": ..., "logloss": ..., ...}
    exported = api.export(run)          # {"out_dir": ..., "parity": {...}, ...}
    same = api.load_run(run.run_dir)    # metrics and paths (no model)

A two-tower run (``experiment=two_tower_movielens_tiny``) works the same way; its
``metrics["indexes"]`` hold each ANN index's recall and queries per second, and
``api.build_indexes(run, ["flat", "hnsw"])`` saves indexes under ``run_dir/indexes``;
``api.two_tower(run).item_vectors()`` gives the item vectors for indexes of one's own.
``api.explore(ranker_run, retrieval_run)`` runs the Explore funnel of the synthetic app.

Library log lines stay quiet (:func:`recsys.apps.console.quiet_libraries`; pass
``verbose=True`` to it to see them). May import everything in ``recsys`` except ``cli``;
nothing in ``recsys`` imports it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from torch import nn

from recsys.apps.console import quiet_libraries
from recsys.config.compose import compose_config

__all__ = [
    "Run",
    "build_indexes",
    "compose",
    "evaluate",
    "explore",
    "export",
    "load_run",
    "train",
    "two_tower",
]


@dataclass
class Run:
    """A finished run: its folder, ``metrics.json``'s content, the trained model (``None``
    for a run reopened by :func:`load_run`) and the lines ``recsys train`` prints."""

    run_dir: Path
    metrics: dict[str, Any]
    model: nn.Module | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "config.resolved.yaml"

    @property
    def plots(self) -> list[Path]:
        """The run's PNG files (:mod:`recsys.train.plots`), sorted by name."""
        return sorted(self.run_dir.glob("*.png"))

    @property
    def curves(self) -> dict[str, list[dict[str, Any]]]:
        """The learning curves (``curves.json``: ``train`` loss and ``valid`` metrics by step)."""
        path = self.run_dir / "curves.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def summary(self) -> str:
        """The headline numbers and the metrics file, as ``recsys train`` prints them."""
        from recsys.apps.summaries import run_lines

        return "\n".join(self.lines or run_lines(self.metrics, self.metrics_path))


def compose(command: str = "train", overrides: Sequence[str] = ()) -> Any:
    """The composed config of ``recsys <command> overrides...`` (an OmegaConf ``DictConfig``;
    ``command``: train, evaluate, export, index, explore)."""
    return compose_config(command, overrides)


def _out_dir(cfg: Any, given: str | Path | None) -> Path:
    if given is not None:
        return Path(given)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    return Path(cfg.paths.output_root) / cfg.paths.runs / stamp


def _run_dir_of(run: Run | str | Path) -> Path:
    return run.run_dir if isinstance(run, Run) else Path(run)


def train(
    overrides: Sequence[str] = (), *, run_dir: str | Path | None = None, config: str = "train"
) -> Run:
    """``recsys train overrides...`` (``config="quickstart"``: ``recsys quickstart``); the run
    goes to ``run_dir`` (default ``<output root>/runs/<name>/<time>``)."""
    from recsys.apps.train import train_with_model

    quiet_libraries()
    cfg = compose_config(config, overrides)
    out = _out_dir(cfg, run_dir)
    metrics, model, lines = train_with_model(cfg, out)
    return Run(out, metrics, model, lines)


def load_run(run_dir: str | Path) -> Run:
    """A finished run's folder reopened: metrics and paths (``model`` is ``None``)."""
    path = Path(run_dir)
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file} not found: {path} is not a finished run")
    return Run(path, json.loads(metrics_file.read_text()))


def evaluate(run: Run | str | Path, split: str = "test", overrides: Sequence[str] = ()) -> dict:
    """``recsys evaluate evaluate.run_dir=RUN evaluate.split=SPLIT``: the split's metrics
    (also written to ``RUN/eval-<split>.json``)."""
    from recsys.apps.evaluate import evaluate_run

    quiet_libraries()
    args = [f"evaluate.run_dir={_run_dir_of(run)}", f"evaluate.split={split}", *overrides]
    return evaluate_run(compose_config("evaluate", args))[0]


def export(run: Run | str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``recsys export export.run_dir=RUN``: ONNX models + manifest in ``RUN/export``; returns
    the export's summary (its folder, the ONNX-vs-PyTorch parity, what MLflow recorded)."""
    from recsys.apps.export import export_run

    quiet_libraries()
    cfg = compose_config("export", [f"export.run_dir={_run_dir_of(run)}", *overrides])
    return export_run(cfg)[0]


def build_indexes(
    run: Run | str | Path, kinds: Sequence[str] = ("hnsw",), overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """``recsys index build index.run_dir=RUN index.kind=[...]`` of a two-tower run: each
    index's test recall, build time and queries per second; saved under ``RUN/indexes/``."""
    from recsys.apps.index import index_build

    quiet_libraries()
    args = [f"index.run_dir={_run_dir_of(run)}", f"index.kind=[{','.join(kinds)}]", *overrides]
    return index_build(compose_config("index", args))[0]


def two_tower(run: Run | str | Path) -> Any:
    """A finished two-tower run reopened with its data (the same model and split as the run):
    ``.item_vectors()`` -> ``(item ids N, vectors N x D)``, ``.test_user_vectors()`` ->
    ``(users Q, vectors Q x D)``, ``.evaluate("test")`` -> Recall/NDCG@K, MRR."""
    from recsys.config.commands import index_request
    from recsys.train.retrieval_run import reopen_two_tower

    quiet_libraries()
    req = index_request(compose_config("index", [f"index.run_dir={_run_dir_of(run)}"]))
    return reopen_two_tower(req.experiment, req.run_dir / "model.pt", req.seed)


def explore(
    ranker_run: Run | str | Path,
    retrieval_run: Run | str | Path,
    overrides: Sequence[str] = (),
    *,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``recsys explore``: the Explore funnel's pages (``pages``: each item's retrieval
    source, per-task probabilities, value and the stage it survived), with
    ``explore.evaluate=true`` its offline value; also written to ``<out_dir>/explore.json``."""
    from recsys.apps.explore import explore_run

    quiet_libraries()
    args = [
        f"explore.ranker_run={_run_dir_of(ranker_run)}",
        f"explore.retrieval_run={_run_dir_of(retrieval_run)}",
        *overrides,
    ]
    cfg = compose_config("explore", args)
    return explore_run(cfg, _out_dir(cfg, out_dir))[0]
