"""The closing lines of the commands: headline numbers first, the output files last."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "closing_lines",
    "distributed_text",
    "ranking_lines",
    "retrieval_lines",
    "retrieval_text",
    "run_lines",
    "task_metrics_text",
]

METRICS = ("auc", "logloss", "ne", "calibration")


def task_metrics_text(metrics: Mapping[str, Any]) -> str:
    """``auc 0.7000  logloss 0.5000 ...`` of one task's metrics."""
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in METRICS if k in metrics)


def closing_lines(
    train: Mapping[str, Any], metrics_path: Path, data: Mapping[str, Any] | None = None
) -> list[str]:
    """The last lines every run prints: the bad rows skipped (``on_bad_rows=skip``), training
    speed and time, then the metrics file."""
    skipped = (data or {}).get("bad_rows_skipped", 0)
    note = [f"data: skipped {skipped:,} bad rows (on_bad_rows=skip)"] if skipped else []
    speed = (
        f"train {train['examples_per_sec']:,.0f} examples/s, {train['wall_seconds']:.1f} s, "
        f"{train['steps']} steps"
    )
    return [*note, speed, f"metrics: {metrics_path}"]


def ranking_lines(metrics: Mapping[str, Any], metrics_path: Path) -> list[str]:
    """A ranker run: headline test numbers per task (with the best achievable AUC on
    synthetic data), baselines, then :func:`closing_lines`."""
    lines = [f"{metrics['name']}: model {metrics['model']}"]
    test = metrics["test"]
    best = metrics.get("data", {}).get("best_achievable_auc", {})
    if "auc" in test:
        lines.append(f"test  {task_metrics_text(test)}")
    else:
        width = max(len(t) for t in test if isinstance(test[t], Mapping))
        for task, m in test.items():
            if not isinstance(m, Mapping):
                continue
            ceiling = f"   (best achievable auc {best[task]:.4f})" if task in best else ""
            lines.append(f"test  {task:<{width}}  {task_metrics_text(m)}{ceiling}")
        lines.append(f"test  mean auc {test['mean_auc']:.4f}")
    for name, result in metrics.get("baselines", {}).items():
        bt = result["test"]
        text = task_metrics_text(bt) if "auc" in bt else f"mean auc {bt['mean_auc']:.4f}"
        lines.append(f"baseline {name}: test  {text}")
    if "distributed" in metrics:
        lines.append(distributed_text(metrics["distributed"]))
    return lines + closing_lines(metrics["train"], metrics_path, metrics.get("data"))


def distributed_text(d: Mapping[str, Any]) -> str:
    """``distributed: 2 workers (gloo), tables row_wise x3 ...``: how a sharded run ran."""
    kinds: dict[str, int] = {}
    for table in d.get("plan", {}).values():
        kinds[table["sharding"]] = kinds.get(table["sharding"], 0) + 1
    tables = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
    restarts = d.get("restarts", 0)
    again = (
        f", {restarts} restart{'s' if restarts != 1 else ''} from checkpoint" if restarts else ""
    )
    return f"distributed: {d['workers']} workers ({d['backend']}), tables {tables}{again}"


def retrieval_text(m: Mapping[str, Any]) -> str:
    return f"recall@10 {m['recall@10']:.4f}  ndcg@10 {m['ndcg@10']:.4f}  mrr {m['mrr']:.4f}"


def retrieval_lines(metrics: Mapping[str, Any], metrics_path: Path) -> list[str]:
    """A two-tower run: model, baselines and indexes, then :func:`closing_lines`."""
    lines = [
        f"{metrics['name']}: model {metrics['model']}",
        f"test  {retrieval_text(metrics['test'])}",
    ]
    for name, result in metrics.get("baselines", {}).items():
        lines.append(f"baseline {name}: test  {retrieval_text(result['test'])}")
    if "oracle" in metrics:  # synthetic data: ranking by the generator's true probabilities
        oracle = metrics["oracle"]["test"]
        lines.append(
            f"oracle (true engagement probabilities, {oracle['users']} test users): "
            f"test  {retrieval_text(oracle)}"
        )
    for name, result in metrics.get("indexes", {}).items():
        if isinstance(result, Mapping):
            lines.append(
                f"index {name}: test recall@10 {result['recall@10']:.4f}  "
                f"recall@10 vs exact {result['recall@10_vs_exact']:.3f}  "
                f"build {result['build_seconds']:.2f} s  {result['qps']:,.0f} qps"
            )
    return lines + closing_lines(metrics["train"], metrics_path)


def run_lines(metrics: Mapping[str, Any], metrics_path: Path) -> list[str]:
    """The closing lines of a run of either task."""
    if metrics.get("task") == "retrieval":
        return retrieval_lines(metrics, metrics_path)
    return ranking_lines(metrics, metrics_path)
