"""``recsys train --multirun hydra/launcher=ray``: each trial of a Hydra sweep a Ray task with
its own run folder and MLflow run; a failed trial is named and does not stop the others."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from tests.recsys_command import run_recsys

pytestmark = pytest.mark.usefixtures("local_ray")


def sweep(root: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--multirun",
        "hydra/launcher=ray",
        "experiment=multitask_social_tiny",
        f"paths.output_root={root / 'out'}",
        f"paths.data_root={root / 'data'}",
        f"hydra.sweep.dir={root / 'sweep'}",
        *extra,
    ]


def test_each_trial_runs_on_ray_with_its_own_folder_and_mlflow_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    run_recsys(sweep(tmp_path, "trainer.batch_size=256,512"))
    printed = capsys.readouterr().out
    assert printed.count("test  mean auc") == 2  # each trial's summary, in trial order
    run_ids = []
    for num, batch in enumerate((256, 512)):
        folder = tmp_path / "sweep" / str(num)
        hydra_cfg = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["job"]["id"] == f"ray_{num}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["train"]["steps"] > 0
        config = yaml.safe_load((folder / "config.resolved.yaml").read_text())
        assert config["trainer"]["batch_size"] == batch
        run_ids.append(metrics["run_id"])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["multitask_social_tiny"])
    assert sorted(runs["run_id"]) == sorted(run_ids)
    assert sorted(runs["params.trainer.batch_size"].astype(int)) == [256, 512]
    assert set(runs["status"]) == {"FINISHED"}


def test_a_failed_trial_is_named_and_the_others_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run_recsys(sweep(tmp_path, "trainer.batch_size=0,256", "tracking.enabled=false"))
    err = capsys.readouterr().err
    assert "1 of 2 trials failed: #0 (" in err and "trainer.batch_size=0" in err
    assert (tmp_path / "sweep" / "1" / "metrics.json").is_file()


def test_a_dead_ray_address_fails_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    ray.shutdown()  # the launcher joins a running Ray; make it connect (the fixture restarts)
    try:
        start = time.perf_counter()
        with pytest.raises(SystemExit):
            run_recsys(sweep(tmp_path, "hydra.launcher.address=127.0.0.1:1", "seed=1,2"))
        assert time.perf_counter() - start < 30
        assert "no Ray cluster answers at hydra.launcher.address='127.0.0.1:1'" in (
            capsys.readouterr().err
        )
    finally:
        ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
