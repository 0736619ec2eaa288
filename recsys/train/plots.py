"""The pictures of a run, drawn after it from what it measured (never in the training loop).

matplotlib is imported lazily and drawn without pyplot (``Figure`` on the Agg canvas), so
nothing here changes a notebook's or a server's backend. Every function takes plain data
(``metrics.json``'s content, the trainer's curves) and writes PNG files; :func:`run_plots`
writes all that apply to a run:

* ``learning_curves.png`` - train loss and the validation metrics by step (either task);
* ``reliability.png`` - a ranker's reliability diagram per task (a panel each; test split);
* ``auc_vs_best.png`` - a ranker's (and its baselines') test AUC per task against the best
  achievable AUC of synthetic data (the generator's true probabilities);
* ``recall_at_k.png`` - a two-tower's test Recall@K for the model, its baselines and its
  indexes;
* ``recall_vs_qps.png`` - each ANN index's recall@10 against its queries per second.

The benchmarks draw their latency histograms with :func:`latency_histogram_plot`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "auc_vs_best_plot",
    "latency_histogram_plot",
    "learning_curves_plot",
    "recall_at_k_plot",
    "recall_vs_qps_plot",
    "reliability_plot",
    "run_plots",
]


def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def learning_curves_plot(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """Train loss by step, then one panel per validation metric (AUC and logloss of a ranker,
    one line per task; recall@10 and ndcg@10 of a two-tower) by step (``valid/...`` keys of
    ``curves["valid"]``)."""
    valid = list(curves.get("valid", []))
    names = sorted({k for p in valid for k in p if k.startswith("valid/")})
    panels: dict[str, list[str]] = {}
    for name in names:
        metric = name.rsplit("/", 1)[-1]
        family = "auc" if metric == "mean_auc" else metric
        if family in _CURVE_METRICS:
            panels.setdefault(family, []).append(name)
    fig, axes = _figure(1 + len(panels), width=4.2)
    train = list(curves.get("train", []))
    if train:
        axes[0].plot([p["step"] for p in train], [p["loss"] for p in train], marker=".")
    axes[0].set(title="train loss", xlabel="step", ylabel="loss")
    for ax, (family, members) in zip(axes[1:], panels.items()):
        for name in members:
            points = [(p["step"], p[name]) for p in valid if name in p]
            label = name.removeprefix("valid/").removesuffix(f"/{family}") or family
            ax.plot(*zip(*points), marker="o", label=label)
        ax.set(title=f"validation {family}", xlabel="step")
        if len(members) > 1:
            ax.legend(fontsize="small")
    return _save(fig, path)


_CURVE_METRICS = ("auc", "logloss", "recall@10", "ndcg@10")


def reliability_plot(bins: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> Path:
    """One reliability diagram per task (a panel each): observed positive rate against mean
    predicted probability per (quantile) bin; the diagonal is a calibrated model."""
    fig, axes = _figure(len(bins), width=3.4, height=3.4)
    for ax, (task, b) in zip(axes, bins.items()):
        pred, rate = b["mean_predicted"], b["observed_rate"]
        top = max([*pred, *rate, 0.01]) * 1.05
        ax.plot([0, top], [0, top], linestyle="--", color="grey", label="calibrated")
        ax.plot(pred, rate, marker="o", label=f"model ({int(sum(b['count'])):,} ex.)")
        ax.set(title=task, xlabel="mean predicted", xlim=(0, top), ylim=(0, top))
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("observed rate")
    return _save(fig, path)


def _ranking_aucs(test: Mapping[str, Any]) -> dict[str, float]:
    if "auc" in test:
        return {"auc": float(test["auc"])}
    return {t: float(m["auc"]) for t, m in test.items() if isinstance(m, Mapping) and "auc" in m}


def auc_vs_best_plot(metrics: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars per task: the model's test AUC, each baseline's, and the best achievable."""
    best = metrics["data"]["best_achievable_auc"]
    series = {str(metrics.get("model", "model")): _ranking_aucs(metrics["test"])}
    for name, result in metrics.get("baselines", {}).items():
        series[name] = _ranking_aucs(result["test"])
    tasks = list(best)
    series["best achievable"] = {t: float(best[t]) for t in tasks}
    fig, (ax,) = _figure(1, width=max(5.0, 1.2 * len(tasks) + 2))
    width = 0.8 / len(series)
    for i, (name, aucs) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(tasks))]
        ax.bar(xs, [aucs.get(t, float("nan")) for t in tasks], width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks)
    ax.set(title="test AUC vs best achievable", ylabel="AUC", ylim=(0.5, 1.0))
    ax.legend(fontsize="small")
    return _save(fig, path)


def _recall_curve(m: Mapping[str, Any]) -> tuple[list[int], list[float]]:
    ks = sorted(int(k.split("@")[1]) for k in m if k.startswith("recall@") and k[7:].isdigit())
    return ks, [float(m[f"recall@{k}"]) for k in ks]


def recall_at_k_plot(metrics: Mapping[str, Any], path: Path) -> Path:
    """Test Recall@K of the model (exact search), its baselines and its ANN indexes."""
    fig, (ax,) = _figure(1, width=6.0)
    ax.plot(*_recall_curve(metrics["test"]), marker="o", linewidth=2, label="model (exact)")
    for name, result in metrics.get("baselines", {}).items():
        ax.plot(*_recall_curve(result["test"]), marker="s", label=name)
    for name, result in metrics.get("indexes", {}).items():
        if isinstance(result, Mapping):
            ax.plot(*_recall_curve(result), marker=".", linestyle=":", label=f"index {name}")
    ax.set(title="test Recall@K", xlabel="K", ylabel="recall", xscale="log")
    ax.legend(fontsize="small")
    return _save(fig, path)


def recall_vs_qps_plot(indexes: Mapping[str, Any], path: Path) -> Path:
    """One point per ANN index: recall@10 against exact search vs queries per second."""
    fig, (ax,) = _figure(1)
    for name, result in indexes.items():
        if isinstance(result, Mapping) and "qps" in result:
            ax.scatter(result["qps"], result["recall@10_vs_exact"], s=40)
            ax.annotate(name, (result["qps"], result["recall@10_vs_exact"]), fontsize="small")
    ax.set(title="ANN: recall vs speed", xlabel="queries per second", xscale="log")
    ax.set(ylabel="recall@10 vs exact search")
    return _save(fig, path)


def latency_histogram_plot(
    samples_ms: Mapping[str, Sequence[float]], path: Path, title: str = "latency"
) -> Path:
    """One histogram per path of its call latencies (ms, log-spaced bins shared by all), with
    each path's p50 and p99 in its label (the benchmarks' figures)."""
    import numpy as np

    fig, (ax,) = _figure(1, width=6.0)
    every = np.concatenate([np.asarray(v, dtype=float) for v in samples_ms.values()])
    low, high = max(float(every.min()), 1e-4), float(every.max())
    edges = np.geomspace(low, high * 1.0001 if high > low else low * 2, 40)
    for name, values in samples_ms.items():
        v = np.asarray(values, dtype=float)
        p50, p99 = np.percentile(v, [50, 99])
        ax.hist(
            v,
            bins=edges,
            histtype="step",
            linewidth=1.5,
            label=f"{name}: p50 {p50:.3g} ms, p99 {p99:.3g} ms",
        )
    ax.set(title=title, xlabel="ms per call", ylabel="calls", xscale="log")
    ax.legend(fontsize="small")
    return _save(fig, path)


def run_plots(
    out_dir: Path,
    metrics: Mapping[str, Any],
    curves: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    reliability: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> list[Path]:
    """Writes every plot that applies to a run into ``out_dir``; returns their paths."""
    written: list[Path] = []
    if curves and (curves.get("train") or curves.get("valid")):
        written.append(learning_curves_plot(curves, out_dir / "learning_curves.png"))
    if metrics.get("task") == "retrieval":
        written.append(recall_at_k_plot(metrics, out_dir / "recall_at_k.png"))
        indexes = metrics.get("indexes", {})
        if any(isinstance(v, Mapping) for v in indexes.values()):
            written.append(recall_vs_qps_plot(indexes, out_dir / "recall_vs_qps.png"))
        return written
    drawn = {task: bins for task, bins in (reliability or {}).items() if bins["count"]}
    if drawn:
        written.append(reliability_plot(drawn, out_dir / "reliability.png"))
    if metrics.get("data", {}).get("best_achievable_auc"):
        written.append(auc_vs_best_plot(metrics, out_dir / "auc_vs_best.png"))
    return written
