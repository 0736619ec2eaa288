"""What a distributed run that cannot start or cannot finish says: one clear error, quickly,
for a dead Ray address, tables over the memory budget, a batch that does not split, workers
asking for more CPUs than the cluster has and a worker that fails at start."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from recsys.distributed.launcher import (
    DistributedError,
    check_address,
    connect,
    train_and_test_distributed,
)
from recsys.distributed.sharding import (
    MODEL_PARALLEL,
    ShardingError,
    attach_sparse_optimizer,
    describe_plan,
    plan_sharding,
    table_sizes,
)
from recsys.train.parallel import DistributedConfig
from tests.distributed.harness import recipe_and_data
from tests.recsys_command import run_recsys


def tiny(root: Path, *extra: str) -> list[str]:
    return [
        "experiment=multitask_social_tiny",
        f"paths.output_root={root / 'out'}",
        f"paths.data_root={root / 'data'}",
        "trainer.distributed.workers=2",
        *extra,
    ]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("errors")
    return recipe_and_data(tiny(root), root / "run")


def with_distributed(recipe, **changes):
    config = dataclasses.replace(recipe.trainer.distributed, **changes)
    return dataclasses.replace(
        recipe, trainer=dataclasses.replace(recipe.trainer, distributed=config)
    )


def test_a_dead_address_fails_within_seconds() -> None:
    t0 = time.perf_counter()
    with pytest.raises(DistributedError, match=r"no Ray cluster answers at .*127\.0\.0\.1:1"):
        connect(DistributedConfig(workers=2, address="127.0.0.1:1"))
    assert time.perf_counter() - t0 < 10
    with pytest.raises(DistributedError, match="not host:port"):
        check_address("nonsense")


def test_the_command_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_recsys(["train", *tiny(tmp_path, "trainer.distributed.address=ray://127.0.0.1:1")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Ray cluster answers" in err[0]


def test_tables_over_the_memory_budget_are_refused_before_anything_starts(recipe) -> None:
    model, dataset = recipe
    small = with_distributed(model, memory_budget_gb=1e-6)
    with pytest.raises(DistributedError, match=r"do not fit 2 worker\(s\) with 1e-06 GiB"):
        train_and_test_distributed(small, dataset, seed=0, tracker=None, checkpoint_dir=None)


def test_a_global_batch_that_does_not_split_over_the_workers(recipe) -> None:
    model, dataset = recipe
    odd = dataclasses.replace(model, trainer=dataclasses.replace(model.trainer, batch_size=511))
    with pytest.raises(ValueError, match="511"):
        train_and_test_distributed(odd, dataset, seed=0, tracker=None, checkpoint_dir=None)


@pytest.mark.usefixtures("local_ray")
def test_workers_asking_for_more_cpus_than_the_cluster_has(recipe) -> None:
    model, dataset = recipe
    greedy = with_distributed(model, cpus_per_worker=512.0)
    t0 = time.perf_counter()
    with pytest.raises(DistributedError, match=r"need 1024 CPUs; the Ray cluster has"):
        train_and_test_distributed(greedy, dataset, seed=0, tracker=None, checkpoint_dir=None)
    assert time.perf_counter() - t0 < 30


@pytest.mark.usefixtures("local_ray")
def test_a_worker_that_fails_at_start_is_named(recipe, tmp_path: Path) -> None:
    model, dataset = recipe
    for f in dataset.files("train"):  # the workers find no training data
        f.rename(f.with_suffix(".moved"))
    try:
        with pytest.raises(DistributedError, match=r"distributed training failed .*worker \d"):
            train_and_test_distributed(
                with_distributed(model, max_failures=0),
                dataset,
                seed=0,
                tracker=None,
                checkpoint_dir=tmp_path,
            )
    finally:
        for f in dataset.files("train"):
            f.with_suffix(".moved").rename(f)


@pytest.mark.parametrize("sharding", ["table_wise", "row_wise", "column_wise", "auto"])
def test_dry_run_plans(recipe, sharding: str) -> None:
    model, dataset = recipe
    probe = model.shardable_build(dataset.spec)
    attach_sparse_optimizer(probe, model.sparse_optimizer_spec)
    plan = describe_plan(
        plan_sharding(probe, world_size=2, device=torch.device("cpu"), sharding=sharding)
    )
    assert set(plan) == set(table_sizes(probe))
    kinds = {p["sharding"] for p in plan.values()}
    assert kinds == {sharding} if sharding != "auto" else kinds <= set(MODEL_PARALLEL)
    if sharding == "row_wise":  # every table split over both workers
        assert all(p["ranks"] == [0, 1] for p in plan.values())


def test_an_unknown_sharding_type_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"trainer\.distributed\.sharding must be one of"):
        DistributedConfig(workers=2, sharding="data_parallel")
    with pytest.raises(ShardingError, match=r"sparse_optimizer\.type"):
        attach_sparse_optimizer(torch.nn.Linear(2, 2), {"type": "lamb"})
