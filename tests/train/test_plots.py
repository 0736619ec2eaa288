"""The run's pictures from plain metrics, and the reliability bins they draw."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.metrics.binary import reliability_bins
from recsys.train.plots import run_plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_reliability_bins_are_quantiles_and_find_miscalibration() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 0.2, 20_000)
    y = (rng.uniform(size=p.size) < p).astype(np.float64)
    bins = reliability_bins(y, p, n_bins=5)
    assert bins["count"] == [4000.0] * 5
    assert bins["bin_lower"] == sorted(bins["bin_lower"])
    assert np.allclose(bins["observed_rate"], bins["mean_predicted"], atol=0.02)
    doubled = reliability_bins(y, np.minimum(2 * p, 1.0), n_bins=5)
    assert np.all(np.array(doubled["mean_predicted"]) > 1.5 * np.array(doubled["observed_rate"]))
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(y, p, n_bins=0)


def _recall(scale: float) -> dict[str, float]:
    return {f"recall@{k}": scale * k / 100 for k in (10, 20, 50, 100)}


def test_run_plots_write_every_picture_that_applies(tmp_path) -> None:
    curves = {
        "train": [{"step": s, "loss": 1.0 / s} for s in (5, 10, 15)],
        "valid": [{"step": 15, "metric": 0.7, "valid/like/auc": 0.7, "valid/like/logloss": 0.3}],
    }
    bins = {"bin_lower": [0.0, 0.1], "mean_predicted": [0.05, 0.2], "observed_rate": [0.04, 0.3]}
    ranking = {
        "task": "ranking",
        "model": "multitask",
        "test": {"like": {"auc": 0.7}, "save": {"auc": 0.6}, "mean_auc": 0.65},
        "baselines": {"logreg": {"test": {"like": {"auc": 0.65}, "save": {"auc": 0.55}}}},
        "data": {"best_achievable_auc": {"like": 0.8, "save": 0.75}},
    }
    written = run_plots(tmp_path / "r", ranking, curves, {"like": {**bins, "count": [10.0, 10.0]}})
    names = sorted(p.name for p in written)
    assert names == ["auc_vs_best.png", "learning_curves.png", "reliability.png"]
    assert all(p.read_bytes().startswith(PNG) for p in written)
    index = {**_recall(0.9), "recall@10_vs_exact": 0.95, "qps": 1e5}
    retrieval = {
        "task": "retrieval",
        "test": _recall(1.0),
        "baselines": {"most_popular": {"test": _recall(0.5)}},
        "indexes": {"hnsw": index, "faiss_threads": 2},
    }
    written = run_plots(tmp_path / "t", retrieval, {"train": curves["train"]})
    assert sorted(p.name for p in written) == [
        "learning_curves.png",
        "recall_at_k.png",
        "recall_vs_qps.png",
    ]


def test_latency_histogram_of_the_benchmarks(tmp_path) -> None:
    from recsys.train.plots import latency_histogram_plot

    rng = np.random.default_rng(1)
    samples = {"ours": rng.lognormal(0, 0.3, 200), "raw": rng.lognormal(-1, 0.3, 200)}
    path = latency_histogram_plot(samples, tmp_path / "lat.png", "demo")
    assert path.read_bytes().startswith(PNG)
