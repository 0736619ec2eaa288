"""The Python API (recsys.api) that notebooks use: a run as an object, the commands as calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from recsys import api

from .recsys_command import SOCIAL_600

TINY = [
    "experiment=multitask_social_tiny",
    *SOCIAL_600,
    "trainer.max_steps=6",
    "trainer.batch_size=512",
    "trainer.log_every_steps=2",
    "tracking.enabled=false",
]


def test_train_evaluate_and_reopen_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RECSYS_OUTPUT_ROOT", str(tmp_path / "outputs"))
    assert api.compose("train", TINY).name == "multitask_social_tiny"
    run = api.train(TINY)
    assert run.run_dir.parent == tmp_path / "outputs" / "runs" / "multitask_social_tiny"
    assert run.metrics == json.loads(run.metrics_path.read_text())
    assert isinstance(run.model, nn.Module) and run.config_path.is_file()
    assert run.summary().splitlines()[-1] == f"metrics: {run.metrics_path}"
    names = {p.name for p in run.plots}
    assert {"learning_curves.png", "auc_vs_best.png", "reliability.png"} <= names
    assert [p["step"] for p in run.curves["train"]] == [2, 4, 6]
    rescored = api.evaluate(run, "test")
    assert rescored["like"]["auc"] == pytest.approx(run.metrics["test"]["like"]["auc"], abs=1e-6)
    again = api.load_run(run.run_dir)
    assert again.metrics == run.metrics and again.model is None
    explicit = api.train(TINY, run_dir=tmp_path / "mine")
    assert explicit.metrics_path == tmp_path / "mine" / "metrics.json"
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        api.load_run(tmp_path)
