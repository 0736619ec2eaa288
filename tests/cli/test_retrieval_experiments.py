"""Every two-tower experiment file runs end to end through ``recsys train`` on small data:
metrics.json layout (model, baselines, split facts), closing lines, routing by ``task``; the
one trainer config, keys a task does not read, a MovieLens release without side files,
``recsys evaluate`` of a two-tower run, and runs written before the config groups."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main

from ..conftest import ROOT, shared_data

LEGACY = ROOT / "tests" / "fixtures" / "legacy_runs"

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
    extra = ["trainer.max_epochs=1", "++retrieval.baselines.als.iterations=2"]
    if "movielens" in experiment:
        extra.append(f"data.path={shared_data('ml-100k')}")
        extra.append("trainer.max_steps=10")
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
    assert any(line.startswith("test  recall@10") for line in out[-12:])
    assert any(line.startswith("baseline als: test") for line in out[-12:])
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
    # synthetic data: the ceiling of ranking by the generator's true probabilities
    oracle = metrics["oracle"]["test"]
    assert oracle["users"] > 0 and oracle["recall@100"] > metrics["test"]["recall@100"]


def test_retrieval_config_typos_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "experiment=two_tower_social_tiny"]
    cases = {
        "+trainer.epochz=2": "epochz",
        "+model.arch.towr=1": "towr",
        "+retrieval.baselines.bpr={}": "bpr",
        "+retrieval.interactions.usr=x": "usr",
        "+retrieval.indexes.hnsw.ef_serch=3": "ef_serch",
        "task=ranknig": "ranknig",
        # groups and keys the two-tower does not read are errors, not silence
        "baseline=logreg": "baseline",
        "+trainer.loss_weights.like=2": "loss_weights",
        "model.fused=true": "fused",
        "model=dlrm": "two_tower",
    }
    for i, (override, key) in enumerate(cases.items()):
        GlobalHydra.instance().clear()
        with pytest.raises(SystemExit):
            main([*base, override, f"hydra.run.dir={tmp_path / str(i)}"])
        assert key in capsys.readouterr().err, override
        assert not (tmp_path / str(i) / "metrics.json").exists()


def test_retrieval_group_on_a_ranker_run_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "experiment=multitask_social_tiny",
                "retrieval=default",
                f"hydra.run.dir={tmp_path}",
            ]
        )
    assert "read only by task=retrieval" in capsys.readouterr().err


def _train_tiny_movielens(run_dir: Path, *extra: str) -> dict:
    main(
        [
            "train",
            "experiment=two_tower_movielens_tiny",
            f"data.path={shared_data('ml-100k')}",
            "retrieval/indexes=flat",
            *extra,
            f"hydra.run.dir={run_dir}",
        ]
    )
    GlobalHydra.instance().clear()
    return json.loads((run_dir / "metrics.json").read_text())


def test_one_trainer_config_drives_the_two_tower(tmp_path: Path) -> None:
    """trainer.max_epochs / max_steps are the two-tower's epochs and steps; validation
    recall@10 is evaluated every epoch and early stopping can stop on it."""
    m = _train_tiny_movielens(
        tmp_path / "a", "trainer.max_steps=null", "trainer.max_epochs=2", "trainer.batch_size=8192"
    )
    steps_per_epoch = -(-m["data"]["events"]["train"] // 8192)
    assert m["train"]["steps"] == 2 * steps_per_epoch and m["train"]["epochs_completed"] == 2
    assert len(m["train"]["epoch_losses"]) == 2
    m = _train_tiny_movielens(
        tmp_path / "b",
        "trainer.max_steps=null",
        "trainer.max_epochs=6",
        "trainer.batch_size=8192",
        "trainer.early_stopping.enabled=true",
        "trainer.early_stopping.patience=1",
        "trainer.early_stopping.min_delta=1.0",  # nothing improves by 1.0: stop after 2 evals
        "trainer.early_stopping.restore_best=true",
    )
    assert m["train"]["stopped_early"] and m["train"]["epochs_completed"] == 2
    assert m["train"]["best_step"] == steps_per_epoch


def test_evaluate_rescores_a_two_tower_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    metrics = _train_tiny_movielens(run_dir)
    capsys.readouterr()
    for split in ("test", "valid"):
        main(
            [
                "evaluate",
                f"evaluate.run_dir={run_dir}",
                f"evaluate.split={split}",
                f"hydra.run.dir={tmp_path / ('eval-' + split)}",
            ]
        )
        GlobalHydra.instance().clear()
        again = json.loads((run_dir / f"eval-{split}.json").read_text())
        assert again == metrics[split]
        out = capsys.readouterr().out.strip().splitlines()
        assert out[-1] == f"metrics: {run_dir / f'eval-{split}.json'}"
        assert out[-2].startswith(f"{split}  recall@10 {metrics[split]['recall@10']:.4f}")
    with pytest.raises(SystemExit):
        main(
            [
                "evaluate",
                f"evaluate.run_dir={run_dir}",
                "evaluate.split=train",
                f"hydra.run.dir={tmp_path / 'bad'}",
            ]
        )
    assert "valid" in capsys.readouterr().err


def _latest_release(folder: Path, ratings: int = 20_000) -> Path:
    """ml-100k rewritten as a "latest" CSV release: ratings.csv, movies.csv (some movies with
    "(no genres listed)"), tags.csv, and no user file."""
    src = shared_data("ml-100k")
    folder.mkdir()
    lines = (src / "u.data").read_text().splitlines()[:ratings]
    rows = ["userId,movieId,rating,timestamp"] + [",".join(x.split("\t")) for x in lines]
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    movies = ["movieId,title,genres"]
    for k, line in enumerate((src / "u.item").read_bytes().decode("latin-1").splitlines()):
        movie = line.split("|")[0]
        genres = "(no genres listed)" if k % 7 == 0 else ("Comedy|Drama" if k % 2 else "Action")
        movies.append(f'{movie},"Movie {movie} (1995)",{genres}')
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,funny,881250949\n")
    return folder


def test_two_tower_on_a_release_without_side_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No user demographics: trained without them; empty genre lists are empty bags."""
    release = _latest_release(tmp_path / "ml-latest-small")
    run_dir = tmp_path / "run"
    main(
        [
            "train",
            "experiment=two_tower_movielens_tiny",
            f"data.path={release}",
            "retrieval/indexes=flat",
            f"hydra.run.dir={run_dir}",
        ]
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"]["absent_features"] == ["age", "gender", "occupation", "zip_prefix"]
    assert metrics["data"]["rows_read"] == 20_000
    assert "genres" in metrics["data"]["cardinalities"]
    assert 0.0 <= metrics["test"]["recall@10"] <= 1.0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("metrics: ")


def _legacy_config(name: str, tmp_path: Path) -> str:
    text = (LEGACY / f"{name}.yaml").read_text()
    return (
        text.replace("@DATA_ROOT@", str(tmp_path / "data_root"))
        .replace("@OUTPUT_ROOT@", str(tmp_path / "outputs"))
        .replace("@ML100K@", str(shared_data("ml-100k")))
    )


def test_runs_written_before_the_config_groups_still_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A two-tower run folder whose config.resolved.yaml is in the old format (free-form
    ``retrieval`` node: data, model, trainer, indexes as a list) is evaluated and indexed."""
    run_dir = tmp_path / "run"
    metrics = _train_tiny_movielens(run_dir)
    (run_dir / "config.resolved.yaml").write_text(
        _legacy_config("two_tower_movielens_tiny", tmp_path)
    )
    main(["evaluate", f"evaluate.run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'e'}"])
    GlobalHydra.instance().clear()
    assert json.loads((run_dir / "eval-test.json").read_text()) == metrics["test"]
    main(
        [
            "index",
            "build",
            f"index.run_dir={run_dir}",
            "index.kind=[flat,ivf_pq]",
            f"hydra.run.dir={tmp_path / 'i'}",
        ]
    )
    out = capsys.readouterr().out
    assert "index ivf_pq: recall@10 vs exact" in out
    assert (run_dir / "indexes" / "ivf_pq" / "config.json").is_file()
    # The old run's ivf_pq settings (pq_m 16, pq_bits 6) are the ones built.
    saved = json.loads((run_dir / "indexes" / "ivf_pq" / "config.json").read_text())["config"]
    assert saved["pq_m"] == 16 and saved["pq_bits"] == 6
    # A config this version cannot read says how to re-run.
    bad = _legacy_config("two_tower_movielens_tiny", tmp_path).replace(
        "    max_steps: 10", "    max_steps: 10\n    warp_drive: true"
    )
    (run_dir / "config.resolved.yaml").write_text(bad)
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit):
        main(["evaluate", f"evaluate.run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'e2'}"])
    err = capsys.readouterr().err
    assert "warp_drive" in err and "re-run" in err
