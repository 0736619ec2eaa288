"""Hydra task functions behind the ``recsys`` commands, and the summaries they print."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys.config.build import dataset_factory, model_builder, plan_from_config
from recsys.config.retrieval import retrieval_plan_from_config
from recsys.config.schema import ConfigError, validate
from recsys.train.evaluation import evaluate
from recsys.train.experiment import closing_lines, run_experiment
from recsys.train.retrieval_experiment import run_retrieval_experiment
from recsys.train.retrieval_experiment import summary_lines as retrieval_summary_lines
from recsys.train.trainer import resolve_device

METRICS = ("auc", "logloss", "ne", "calibration")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _fmt(metrics: Mapping[str, Any]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in METRICS if k in metrics)


def summary_lines(metrics: Mapping[str, Any], metrics_path: Path) -> list[str]:
    """The closing lines of a run: headline test numbers per task, baselines, the file."""
    lines = [f"{metrics['name']}: model {metrics['model']}"]
    test = metrics["test"]
    best = metrics.get("data", {}).get("best_achievable_auc", {})
    if "auc" in test:
        lines.append(f"test  {_fmt(test)}")
    else:
        width = max(len(t) for t in test if isinstance(test[t], Mapping))
        for task, m in test.items():
            if not isinstance(m, Mapping):
                continue
            ceiling = f"   (best achievable auc {best[task]:.4f})" if task in best else ""
            lines.append(f"test  {task:<{width}}  {_fmt(m)}{ceiling}")
        lines.append(f"test  mean auc {test['mean_auc']:.4f}")
    for name, result in metrics.get("baselines", {}).items():
        bt = result["test"]
        text = _fmt(bt) if "auc" in bt else f"mean auc {bt['mean_auc']:.4f}"
        lines.append(f"baseline {name}: test  {text}")
    return lines + closing_lines(metrics["train"], metrics_path)


def train_task(cfg: DictConfig) -> None:
    """``recsys train`` / ``recsys quickstart``: one run, summary printed last."""
    cfg = validate(cfg)
    run_dir = _run_dir()
    if cfg.task == "retrieval":
        metrics = run_retrieval_experiment(retrieval_plan_from_config(cfg, run_dir))
        lines = retrieval_summary_lines(metrics, run_dir / "metrics.json")
        print("\n".join(lines), flush=True)
        return
    if cfg.task != "ranking":
        raise ConfigError(f"task must be ranking or retrieval, got {cfg.task!r}")
    metrics = run_experiment(plan_from_config(cfg, run_dir))
    print("\n".join(summary_lines(metrics, run_dir / "metrics.json")), flush=True)


def prepare_task(cfg: DictConfig) -> None:
    """``recsys data prepare``: read, preprocess and split; print where it went."""
    cfg = validate(cfg)
    make, _ = dataset_factory(cfg)
    dataset = make()
    spec = dataset.spec
    rows = {s: dataset.num_rows(s) for s in ("train", "valid", "test")}
    skipped = dataset.manifest.get("read_report", {}).get("rows_skipped", 0)
    print(f"{cfg.data.name}: rows {rows}, skipped bad rows {skipped}")
    print(
        f"features: {spec.num_dense} dense, {len(spec.sparse)} sparse, labels {list(spec.labels)}"
    )
    print(f"prepared: {dataset.root}", flush=True)


def evaluate_task(cfg: DictConfig) -> None:
    """``recsys evaluate evaluate.run_dir=DIR [evaluate.split=test]``: re-score a saved model."""
    cfg = validate(cfg)
    if not cfg.evaluate.run_dir:
        raise ConfigError("evaluate.run_dir is required: the folder of a finished training run")
    run_dir = Path(cfg.evaluate.run_dir)
    for name in ("config.resolved.yaml", "model.pt"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"evaluate.run_dir '{run_dir}' has no {name}: is it a finished run?")
    run_cfg = validate(OmegaConf.load(run_dir / "config.resolved.yaml"))
    make, _ = dataset_factory(run_cfg)
    dataset = make()
    model = model_builder(run_cfg.model, run_cfg, "model")(dataset.spec)
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu"))
    split = cfg.evaluate.split
    if split not in ("train", "valid", "test"):
        raise ConfigError(f"evaluate.split must be train, valid or test, got {split!r}")
    loader = dataset.loader(split, run_cfg.trainer.eval_batch_size)
    device = resolve_device(str(run_cfg.trainer.device))
    metrics = evaluate(model, loader, dataset.spec.labels, device=device)
    out = run_dir / f"eval-{split}.json"
    out.write_text(json.dumps(metrics, indent=2))
    body = _fmt(metrics) if "auc" in metrics else f"mean auc {metrics['mean_auc']:.4f}"
    print(f"{split}  {body}")
    print(f"metrics: {out}", flush=True)
