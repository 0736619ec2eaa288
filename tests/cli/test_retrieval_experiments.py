"""Every two-tower experiment file runs end to end through ``recsys train`` on small data:
metrics.json layout (model, baselines, split facts), closing lines, routing by ``task``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main

from ..conftest import ROOT, shared_data

EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("two_tower_*.yaml"))
KS = (10, 20, 50, 100)
METRIC_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "hitrate") for k in KS} | {"mrr", "users"}
SOCIAL_SMALL = [
    "data.source.config.n_users=1000",
    "data.source.config.n_authors=100",
    "data.source.config.n_posts=2000",
    "data.source.config.n_impressions=30000",
    "data.source.config.chunk_rows=10000",
]


def overrides_for(experiment: str) -> list[str]:
    """Small data and few steps (the full files too, so that each file is exercised)."""
    extra = ["++retrieval.trainer.epochs=1", "++retrieval.baselines.als.iterations=2"]
    if "movielens" in experiment:
        extra.append(f"data.path={shared_data('ml-100k')}")
        extra.append("++retrieval.trainer.max_steps=10")
    elif not experiment.endswith("_tiny"):
        extra += SOCIAL_SMALL
    return extra


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_two_tower_experiment_runs_end_to_end(
    experiment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    main(
        [
            "train",
            f"experiment={experiment}",
            *overrides_for(experiment),
            f"hydra.run.dir={run_dir}",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"metrics: {run_dir / 'metrics.json'}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"test", "valid", "train", "data", "baselines", "indexes"}
    for block in (
        metrics["test"],
        metrics["valid"],
        *(metrics["baselines"][b][s] for b in ("most_popular", "als") for s in ("valid", "test")),
    ):
        assert set(block) >= METRIC_KEYS
        assert block["users"] > 0
        assert all(
            0.0 <= block[k] <= 1.0 and math.isfinite(block[k]) for k in METRIC_KEYS - {"users"}
        )
        assert block["recall@10"] <= block["recall@100"]
    assert metrics["train"]["examples_per_sec"] > 0 and metrics["train"]["wall_seconds"] > 0
    data = metrics["data"]
    assert data["interactions"]["test"] > 0 and data["users"] > 0 and data["items"] > 0
    assert any(line.startswith("test  recall@10") for line in out[-10:])
    assert any(line.startswith("baseline als: test") for line in out[-10:])
    assert (run_dir / "model.pt").is_file() and (run_dir / "config.resolved.yaml").is_file()
    if "movielens" in experiment:
        assert data["rows_read"] == 100_000 and sum(data["events"].values()) == 100_000
        assert data["users"] == 943 and data["items"] == 1682
    else:
        assert data["positive_labels"] and data["rows_read"] > sum(data["events"].values())


def test_tiny_social_two_tower_learns_something(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trained for its configured epochs, the model finds held-out items above chance
    (uniform random: recall@100 = 100 / items) and its loss falls."""
    run_dir = tmp_path / "run"
    main(
        [
            "train",
            "experiment=two_tower_social_tiny",
            "tracking.enabled=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chance = 100 / metrics["data"]["items"]
    assert metrics["test"]["recall@100"] > 1.5 * chance
    assert metrics["train"]["epoch_losses"][-1] < metrics["train"]["epoch_losses"][0]


def test_retrieval_config_typos_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "experiment=two_tower_social_tiny"]
    cases = {
        "+retrieval.trainer.epochz=2": "epochz",
        "+retrieval.model.towr=1": "towr",
        "+retrieval.baselines.bpr={}": "bpr",
        "task=ranknig": "ranknig",
    }
    for i, (override, key) in enumerate(cases.items()):
        GlobalHydra.instance().clear()
        with pytest.raises(SystemExit):
            main([*base, override, f"hydra.run.dir={tmp_path / str(i)}"])
        assert key in capsys.readouterr().err, override
        assert not (tmp_path / str(i) / "metrics.json").exists()
