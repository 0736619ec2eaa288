"""Every experiment file runs end to end through the CLI on tiny data, plus the CLI's contracts:
metrics.json layout, closing lines, config typos, evaluate, data prepare, multirun, run dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main

from ..conftest import ROOT, shared_data

# Ranker experiments; the two-tower (retrieval) ones run in test_retrieval_experiments.py.
EXPERIMENTS = sorted(
    p.stem
    for p in (ROOT / "configs" / "experiment").glob("*.yaml")
    if not p.stem.startswith("two_tower")
)
SOCIAL_TINY = [
    "data.source.config.n_users=1000",
    "data.source.config.n_authors=100",
    "data.source.config.n_posts=2000",
    "data.source.config.n_impressions=20000",
    "data.source.config.chunk_rows=10000",
]
METRIC_KEYS = {"auc", "logloss", "ne", "calibration"}


def run_cli(args: list[str], tmp_path: Path) -> tuple[Path, str]:
    """Runs ``recsys ARGS hydra.run.dir=...``; returns the run folder and stdout."""
    run_dir = tmp_path / "run"
    main([*args, f"hydra.run.dir={run_dir}"])
    return run_dir, ""


def overrides_for(experiment: str) -> list[str]:
    """Tiny data and few steps for an experiment file."""
    extra = ["trainer.max_epochs=1"]
    if "criteo" in experiment:
        extra.append(f"data.path={shared_data('criteo-kaggle-head1000/train.txt')}")
        extra += ["trainer.batch_size=128", "trainer.eval_every_steps=null"]
    elif "movielens" in experiment:
        extra.append(f"data.path={shared_data('ml-100k')}")
        extra += ["trainer.max_steps=8", "trainer.batch_size=1024"]
    else:
        extra += [*SOCIAL_TINY, "trainer.max_steps=10", "trainer.batch_size=512"]
        extra.append("trainer.eval_every_steps=null")
    return extra


def check_metrics(metrics: dict, tasks: list[str]) -> None:
    assert set(metrics) >= {"test", "valid", "train", "data"}
    assert metrics["train"]["examples_per_sec"] > 0 and metrics["train"]["wall_seconds"] > 0
    for split in ("test", "valid"):
        block = metrics[split]
        if len(tasks) == 1:
            assert set(block) >= METRIC_KEYS
            assert 0.0 <= block["auc"] <= 1.0
        else:
            for t in tasks:
                assert set(block[t]) >= METRIC_KEYS, (split, t)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_end_to_end(
    experiment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = run_cli(
        ["train", f"experiment={experiment}", *overrides_for(experiment)], tmp_path
    )
    out = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tasks = metrics["data"]["labels"]
    check_metrics(metrics, tasks)
    assert out[-1] == f"metrics: {run_dir / 'metrics.json'}"
    assert any(line.startswith("test ") for line in out[-12:])
    assert (run_dir / "model.pt").is_file() and (run_dir / "config.resolved.yaml").is_file()
    if "movielens" in experiment:
        assert "logreg" in metrics["baselines"]
        assert set(metrics["baselines"]["logreg"]["test"]) >= METRIC_KEYS
        assert sum(metrics["data"]["rows"].values()) == 100_000
    if "criteo" in experiment:
        lines = shared_data("criteo-kaggle-head1000/train.txt").read_bytes().count(b"\n") + 1
        assert sum(metrics["data"]["rows"].values()) == lines
    if "social" in experiment or experiment == "quickstart":
        assert len(tasks) == 5
        best = metrics["data"]["best_achievable_auc"]
        assert set(best) == set(tasks) and all(0.5 < v <= 1.0 for v in best.values())
        assert any("best achievable auc" in line for line in out)


def test_evaluate_rescores_a_saved_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _ = run_cli(
        ["train", "experiment=dlrm_criteo_tiny", *overrides_for("dlrm_criteo_tiny")], tmp_path
    )
    trained = json.loads((run_dir / "metrics.json").read_text())
    GlobalHydra.instance().clear()
    main(["evaluate", f"evaluate.run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'eval'}"])
    out = capsys.readouterr().out.strip().splitlines()
    rescored = json.loads((run_dir / "eval-test.json").read_text())
    assert rescored["auc"] == pytest.approx(trained["test"]["auc"], abs=1e-6)
    assert out[-1] == f"metrics: {run_dir / 'eval-test.json'}"


def test_config_typos_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "experiment=dlrm_criteo_tiny", *overrides_for("dlrm_criteo_tiny")]
    cases = {
        "trainer.batch_sise=3": "batch_sise",
        "+trainer.max_epoch=3": "max_epoch",
        "+model.arch.cross_layerz=2": "cross_layerz",
        "+data.preprocess.min_freqq=2": "min_freqq",
        "trainer.schedule.decay=sometimes": "decay",
        "experiment=dlrm_critter": "dlrm_critter",
    }
    for i, (override, key) in enumerate(cases.items()):
        GlobalHydra.instance().clear()
        with pytest.raises(SystemExit):
            main([*base, override, f"hydra.run.dir={tmp_path / str(i)}"])
        err = capsys.readouterr().err
        assert key in err, (override, err)
        assert not (tmp_path / str(i) / "metrics.json").exists()


def test_bad_criteo_rows_error_or_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = shared_data("criteo-kaggle-head1000/train.txt").read_text().splitlines()[:300]
    fields = rows[41].split("\t")
    fields[5] = "12x"  # I5 is not an integer
    rows[41] = "\t".join(fields)
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(rows) + "\n")
    base = ["train", "experiment=dlrm_criteo_tiny", f"data.path={bad}", "trainer.max_steps=2"]
    with pytest.raises(SystemExit):
        main([*base, f"hydra.run.dir={tmp_path / 'strict'}"])
    err = capsys.readouterr().err
    assert str(bad) in err and "line 42" in err and "I5" in err
    GlobalHydra.instance().clear()
    main([*base, "data.source.on_bad_rows=skip", f"hydra.run.dir={tmp_path / 'lenient'}"])
    out = capsys.readouterr().out.strip().splitlines()
    assert "data: skipped 1 bad rows (on_bad_rows=skip)" in out[-4:]
    metrics = json.loads((tmp_path / "lenient" / "metrics.json").read_text())
    assert metrics["data"]["bad_rows_skipped"] == 1
    assert sum(metrics["data"]["rows"].values()) == 299


def test_data_prepare_and_data_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ml = shared_data("ml-100k")
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(ml.parent))
    main(
        [
            "data",
            "prepare",
            "data=movielens",
            "data.path=ml-100k",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'prep'}",
        ]
    )
    out = capsys.readouterr().out
    assert "rows {'train': 80000, 'valid': 10000, 'test': 10000}" in out
    prepared = Path(out.strip().splitlines()[-1].removeprefix("prepared: "))
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["feature_spec"]["labels"] == ["label"]
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit):
        main(
            [
                "data",
                "prepare",
                "data=movielens",
                "data.path=no-such-folder",
                f"hydra.run.dir={tmp_path / 'missing'}",
            ]
        )
    assert "no-such-folder" in capsys.readouterr().err


def test_multirun_sweeps(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    main(
        [
            "train",
            "--multirun",
            "experiment=dlrm_criteo_tiny",
            *overrides_for("dlrm_criteo_tiny"),
            "trainer.max_steps=2,3",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    steps = sorted(json.loads(p.read_text())["train"]["steps"] for p in runs)
    assert steps == [2, 3]


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("recsys")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "quickstart" in result.stdout and "bench train" in result.stdout


def test_mlflow_and_manifest_record_the_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run_dir, _ = run_cli(
        [
            "train",
            "experiment=multitask_social_tiny",
            "trainer.log_every_steps=5",
            *overrides_for("multitask_social_tiny"),
        ],
        tmp_path,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    manifest = json.loads((Path(metrics["data"]["path"]) / "manifest.json").read_text())
    assert manifest["best_achievable_auc"]["test"] == metrics["data"]["best_achievable_auc"]
    db = Path(os.environ["RECSYS_OUTPUT_ROOT"]) / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("multitask_social_tiny")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.batch_size"] == "512"
    assert run.data.params["model.arch._target_"] == "recsys.models.multitask.MultiTaskRanker"
    assert run.data.metrics["test/like/auc"] == pytest.approx(metrics["test"]["like"]["auc"])
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [5, 10]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.resolved.yaml", "curves.json"} <= artifacts
    plots = {"learning_curves.png", "auc_vs_best.png", "reliability.png"}
    assert plots <= artifacts and all((run_dir / p).is_file() for p in plots)
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)  # the logged model


def test_a_new_ctr_log_needs_only_config(tmp_path: Path) -> None:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    n = 3000
    shop = rng.integers(0, 40, n)
    device = rng.choice(["ios", "android", "web"], n)
    price = rng.gamma(2.0, 10.0, n)
    logit = (shop % 7 - 3) * 0.5 + (device == "ios") * 0.8 - price / 40
    pl.DataFrame(
        {
            "clicked": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
            "shop": shop.astype(str),
            "device": device,
            "price": price.round(2),
            "tags": ["|".join(f"k{(i * 7 + j) % 11}" for j in range(i % 3)) for i in range(n)],
            "ts": 1_700_000_000 + np.arange(n) * 60,
        }
    ).write_csv(tmp_path / "log.csv")
    config = tmp_path / "conf"
    (config / "data").mkdir(parents=True)
    (config / "data" / "shop_log.yaml").write_text(
        (ROOT / "configs" / "data" / "ctr_table.yaml")
        .read_text()
        .replace("name: ctr_table", "name: shop_log")
        .replace("labels: [click]", "labels: [clicked]")
        .replace("dense: []", "dense: [price]")
        .replace("sparse: []", "sparse: [shop, device]")
        .replace("multi: {}", 'multi: {tags: "|"}')
        .replace("timestamp: null", "timestamp: ts")  # a timestamp: the split is temporal
    )
    run_dir, _ = run_cli(
        [
            "train",
            f"hydra.searchpath=[file://{config}]",
            "data=shop_log",
            f"data.path={tmp_path / 'log.csv'}",
            "model=dcn",
            "trainer.batch_size=256",
            "trainer.max_epochs=3",
        ],
        tmp_path,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"]["rows"] == {"train": 2400, "valid": 300, "test": 300}
    manifest = json.loads((Path(metrics["data"]["path"]) / "manifest.json").read_text())
    assert manifest["split"]["kind"] == "temporal", manifest["split"]
    assert metrics["data"]["num_dense"] == 1 and metrics["data"]["num_sparse"] == 3
    assert metrics["test"]["auc"] > 0.6
