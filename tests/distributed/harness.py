"""A ranker run in one process on exactly the global batches of an N-worker run: the
reference that distributed runs are compared with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.config.compose import compose_config
from recsys.config.plan import plan_from_config
from recsys.config.schema import validate
from recsys.data.loader import ParquetBatchLoader
from recsys.data.prepared import PreparedDataset
from recsys.train.ranking_run import ModelRecipe
from recsys.train.run import seed_everything
from recsys.train.tasks.ranking import RankingTask
from recsys.train.trainer import Trainer
from recsys.types import Batch


def concat_batches(parts: Sequence[Batch]) -> Batch:
    """The batches of several workers as one: rows of worker 0, then worker 1, ..."""
    dicts = [p.sparse.to_dict() for p in parts]
    keys = parts[0].sparse.keys()
    values = torch.cat([d[k].values() for k in keys for d in dicts])
    lengths = torch.cat([d[k].lengths() for k in keys for d in dicts])
    return Batch(
        dense=torch.cat([p.dense for p in parts]),
        sparse=KeyedJaggedTensor(
            keys=keys, values=values, lengths=lengths, stride=sum(len(p) for p in parts)
        ),
        labels=torch.cat([p.labels for p in parts]),
        extras={},
    )


class GlobalBatches:
    """A ``BatchSource`` yielding, per step, the union of what every rank's loader yields."""

    def __init__(self, loaders: Sequence[ParquetBatchLoader]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.set_epoch(epoch)

    def iter_from(self, batch_index: int) -> Iterator[Batch]:
        for parts in zip(*(loader.iter_from(batch_index) for loader in self.loaders)):
            yield concat_batches(parts)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)


def recipe_and_data(overrides: Sequence[str], run_dir: Path) -> tuple[ModelRecipe, PreparedDataset]:
    """The main model's recipe and the prepared data set of a ``recsys train`` config."""
    plan = plan_from_config(validate(compose_config("train", overrides)), run_dir)
    experiment = plan.experiment
    experiment.prepare()
    return experiment.model, experiment.dataset  # type: ignore[attr-defined]


def one_process(
    recipe: ModelRecipe, dataset: PreparedDataset, workers: int, seed: int
) -> dict[str, Any]:
    """Trains ``recipe`` in this process on the global batches of a ``workers``-worker run."""
    cfg = recipe.trainer
    seed_everything(seed)
    model = recipe.build(dataset.spec)
    evaluation = {
        "valid": lambda: dataset.loader("valid", cfg.eval_batch_size, shuffle=False),
        "test": lambda: dataset.loader("test", cfg.eval_batch_size),
    }
    task = RankingTask(dataset.spec.labels, eval_loaders=evaluation, loss_weights=cfg.loss_weights)
    trainer = Trainer(
        model,
        cfg,
        task=task,
        dense_optimizer=recipe.dense_optimizer,
        sparse_optimizer=recipe.sparse_optimizer,
    )
    local = cfg.batch_size // workers
    shards = [
        dataset.loader(
            "train", local, shuffle=cfg.shuffle, seed=seed, rank=r, world_size=workers, prefetch=0
        )
        for r in range(workers)
    ]
    result = trainer.fit(GlobalBatches(shards))
    return {
        "test": task.evaluate(model, "test"),
        "curves": result.curves,
        "model": model,
    }
