"""Training on the feature store's data source: on the synthetic world it reproduces the
direct source's metrics exactly (the same rows), and on backend traffic where follows come
after likes it removes the leak of the export's as-of-export follow state (the AUC that leak
made up is measured and printed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from tests.features.conftest import TINY
from tests.pipelines.social_traffic import make_backend

pytestmark = pytest.mark.slow


def _train(tmp_path: Path, name: str, *overrides: str) -> dict:
    from recsys.cli.main import main as recsys_main

    run_dir = tmp_path / name
    GlobalHydra.instance().clear()
    try:
        recsys_main(
            [
                "train",
                "experiment=multitask_social_tiny",
                "tracking.enabled=false",
                f"hydra.run.dir={run_dir}",
                *overrides,
            ]
        )
    finally:
        GlobalHydra.instance().clear()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["feature_spec"] = json.loads((run_dir / "feature_spec.json").read_text())
    return metrics


@pytest.fixture(autouse=True)
def _roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(tmp_path / "data_root"))
    monkeypatch.setenv("RECSYS_OUTPUT_ROOT", str(tmp_path / "outputs"))


def test_feast_source_trains_to_the_direct_sources_metrics(tiny_data: Path, tmp_path: Path) -> None:
    names = ("n_users", "n_authors", "n_posts", "n_impressions", "chunk_rows")
    config = [f"data.source.config.{k}={getattr(TINY, k)}" for k in names]
    direct = _train(tmp_path, "direct", *config)
    feast = _train(tmp_path, "feast", "data=feast_social", f"data.path={tiny_data}")
    assert feast["feature_spec"] == direct["feature_spec"]
    assert feast["data"]["rows"] == direct["data"]["rows"]
    for split in ("valid", "test"):
        assert feast[split]["mean_auc"] == pytest.approx(direct[split]["mean_auc"], abs=1e-6)
    a, b = direct["test"]["mean_auc"], feast["test"]["mean_auc"]
    print(f"synthetic test mean AUC: direct {a:.4f}  feast {b:.4f}")


def test_feast_source_removes_the_as_of_export_follow_leak(tmp_path: Path) -> None:
    from pipelines.feature_sources import export_inputs, write_feature_data
    from pipelines.social_events import export_events
    from tests.features.leaky_traffic import simulate_follow_after_like

    backend, clock = make_backend(tmp_path / "backend")
    try:
        simulate_follow_after_like(backend, clock)
        export = tmp_path / "events"
        export_events(backend.storage.metadata, export, history=True)
    finally:
        backend.close()
    tables, labels = export_inputs(export)
    write_feature_data(tables, labels, tmp_path / "features")
    common = ["trainer.max_epochs=8", "optimizer.lr=0.01", "trainer.batch_size=128"]
    leaky = _train(tmp_path, "export", "data=social_events", f"data.path={export}", *common)
    honest = _train(
        tmp_path, "feast", "data=feast_social", f"data.path={tmp_path / 'features'}", *common
    )
    gap = leaky["test"]["like"]["auc"] - honest["test"]["like"]["auc"]
    print(
        f"like test AUC: export (as-of-export follows) {leaky['test']['like']['auc']:.4f}  "
        f"feast (point in time) {honest['test']['like']['auc']:.4f}  leak {gap:+.4f}"
    )
    assert honest["feature_spec"]["labels"] == leaky["feature_spec"]["labels"]
    assert honest["data"]["num_dense"] == leaky["data"]["num_dense"]
    assert gap > 0.03
