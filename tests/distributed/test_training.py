"""A ranker trained by two Ray Train workers (tables sharded by TorchRec, gloo on CPU): the same
run as one process on the same global batches, and exact recovery from a killed worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys.distributed.launcher import train_and_test_distributed
from tests.distributed.harness import one_process, recipe_and_data
from tests.recsys_command import run_recsys

pytestmark = pytest.mark.usefixtures("local_ray")


def overrides(root: Path) -> list[str]:
    return [
        "experiment=multitask_social_tiny",
        f"paths.output_root={root / 'out'}",
        f"paths.data_root={root / 'data'}",
        "trainer.log_every_steps=1",
        "trainer.checkpoint.every_steps=10",
        "trainer.distributed.max_failures=1",
        "trainer.distributed.workers=2",
    ]


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``recsys train ... trainer.distributed.workers=2``: (scratch root, run folder)."""
    root = tmp_path_factory.mktemp("dist")
    run_recsys(["train", *overrides(root), f"hydra.run.dir={root / 'run'}"])
    return root, root / "run"


def test_two_workers_train_like_one_process_on_the_same_global_batches(
    two_worker_run: tuple[Path, Path], tmp_path: Path
) -> None:
    root, run = two_worker_run
    metrics = json.loads((run / "metrics.json").read_text())
    curves = json.loads((run / "curves.json").read_text())
    d = metrics["distributed"]
    assert d["workers"] == 2 and d["backend"] == "gloo" and d["restarts"] == 0
    assert {t["sharding"] for t in d["plan"].values()} - {"data_parallel"}  # tables are sharded
    assert metrics["train"]["global_batch_size"] == 512

    recipe, dataset = recipe_and_data(overrides(root), tmp_path)
    reference = one_process(recipe, dataset, workers=2, seed=0)  # configs/train.yaml: seed 0
    ours = [p["loss"] for p in curves["train"]]
    theirs = [p["loss"] for p in reference["curves"]["train"]]
    assert len(ours) == len(theirs) == metrics["train"]["steps"]
    assert ours[:5] == pytest.approx(theirs[:5], rel=1e-5)
    assert metrics["test"]["mean_auc"] == pytest.approx(reference["test"]["mean_auc"], abs=0.002)

    # model.pt is the unsharded model, loadable by the one-process model
    state = torch.load(run / "model.pt", weights_only=True)
    reference["model"].load_state_dict(state)


def test_a_killed_worker_is_restarted_and_the_run_continues_exactly(
    two_worker_run: tuple[Path, Path], tmp_path: Path
) -> None:
    root, run = two_worker_run
    recipe, dataset = recipe_and_data(
        [*overrides(root), "trainer.distributed.failure_drill=1:25"], tmp_path
    )
    model, results = train_and_test_distributed(
        recipe, dataset, seed=0, tracker=None, checkpoint_dir=tmp_path / "ckpt"
    )
    assert results["distributed"]["restarts"] == 1
    uninterrupted = torch.load(run / "model.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, uninterrupted[key], rtol=0, atol=0, msg=key)
    metrics = json.loads((run / "metrics.json").read_text())
    assert results["test"]["mean_auc"] == metrics["test"]["mean_auc"]


def test_the_same_processes_launched_by_torch_distributed_run_train_the_same_model(
    two_worker_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from recsys.distributed.torchrun import train_with_torchrun

    root, run = two_worker_run
    recipe, dataset = recipe_and_data(overrides(root), tmp_path)
    model, results = train_with_torchrun(recipe, dataset, seed=0, out=tmp_path / "torchrun")
    assert results["distributed"]["launcher"] == "torchrun"
    assert results["train"]["workers"] == 2
    ray_trained = torch.load(run / "model.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ray_trained[key], rtol=0, atol=0, msg=key)
