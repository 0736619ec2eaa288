"""A two-tower run: interactions -> the two-tower and its baselines, tested, indexed, recorded.

:class:`RetrievalExperiment` is the ``experiment`` of a :class:`~recsys.train.run.RunPlan` with
``task: retrieval``:

1. ``prepare`` reads the raw source into memory and builds
   :class:`~recsys.data.retrieval_data.RetrievalData` (per-user chronological split, histories);
2. the two-tower is trained by the one :class:`~recsys.train.trainer.Trainer` on a
   :class:`~recsys.train.tasks.retrieval.RetrievalTask` (checkpoints, exact resume, early
   stopping on validation recall@10, the learning-rate schedule, MLflow);
3. valid and test are scored over the full corpus (the user's known items removed from
   candidates and relevant set);
4. the baselines (most-popular, implicit ALS) are fitted on train for valid and on train + valid
   for test;
5. the test users' vectors are searched through every configured ANN index.

:func:`reopen_two_tower` rebuilds a finished run's data and model from its experiment and
``model.pt`` (the sources are deterministic, so id maps and vocabularies are the same), for
``recsys evaluate``, ``recsys index build`` and ``recsys explore``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.data.retrieval_data import RetrievalData, RetrievalDataSpec, build_retrieval_data
from recsys.data.source import RawSource
from recsys.data.synthetic.source import SocialSource
from recsys.data.synthetic.world import SocialWorld
from recsys.data.tables import PairBatches
from recsys.models.two_tower import TwoTower, encode_items, encode_users
from recsys.retrieval.evaluate import (
    DEFAULT_KS,
    baseline_metrics,
    evaluate_indexes,
    evaluate_topk,
    exact_topk,
    relevant_and_known,
)
from recsys.retrieval.index import IndexConfig
from recsys.retrieval.oracle import oracle_metrics
from recsys.train.optimizers import OptimizerFactory
from recsys.train.run import Outcome, RunPlan, seed_everything
from recsys.train.tasks.retrieval import RetrievalLossConfig, RetrievalTask
from recsys.train.tracking import Tracker, numeric_metrics
from recsys.train.trainer import Trainer, TrainerConfig

__all__ = ["RetrievalExperiment", "TwoTowerRun", "reopen_two_tower"]


def read_frame(source: RawSource) -> pl.DataFrame:
    """Every chunk of ``source`` in one frame (the retrieval sets fit in memory)."""
    return pl.concat(list(source.iter_chunks()), how="vertical_relaxed")


@dataclass
class RetrievalExperiment:
    """A two-tower and its baselines on the interactions of one raw source.

    Attributes:
        source: makes the raw source (reader or synthetic generator).
        interactions: which columns mean what, the split, the history length.
        build_model: ``RetrievalData -> TwoTower`` on its device.
        dense_optimizer, sparse_optimizer: the towers' and the plain tables' optimizers.
        trainer: the one trainer config (``eval_batch_size`` is the encoding chunk).
        loss: the objective.
        ks: metric cut-offs; baselines: ``{name: kwargs}``; indexes: ANN indexes tested.
    """

    source: Callable[[], RawSource]
    interactions: RetrievalDataSpec
    build_model: Callable[[RetrievalData], TwoTower]
    dense_optimizer: OptimizerFactory
    sparse_optimizer: OptimizerFactory
    trainer: TrainerConfig
    loss: RetrievalLossConfig = field(default_factory=RetrievalLossConfig)
    ks: tuple[int, ...] = DEFAULT_KS
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: list[IndexConfig] = field(default_factory=list)
    kind: str = "retrieval"
    data: RetrievalData | None = None
    source_name: str | None = None
    frame: pl.DataFrame | None = None
    #: the generator's world when the source is synthetic (the oracle's truth model)
    world: SocialWorld | None = None

    def prepare(self, keep_frame: bool = False) -> None:
        """Reads the source and builds the data (``keep_frame``: keep the raw events too)."""
        source = self.source()
        frame = read_frame(source)
        self.source_name = getattr(source, "name", None)
        self.data = build_retrieval_data(frame, self.interactions)
        # synthetic data: keep what the oracle ceiling needs (the truth model and the events)
        self.world = source.world if isinstance(source, SocialSource) else None
        self.frame = frame if keep_frame or self.world is not None else None

    def task(self, seed: int) -> RetrievalTask:
        assert self.data is not None, "prepare() first"
        return RetrievalTask(
            self.data.catalog,
            self.loss,
            data=self.data,
            ks=self.ks,
            seed=seed,
            encode_batch_size=self.trainer.eval_batch_size,
        )

    def execute(self, plan: RunPlan, tracker: Tracker, prepare_seconds: float) -> Outcome:
        if self.data is None:
            self.prepare()
        data = self.data
        assert data is not None
        seed_everything(plan.seed)
        model = self.build_model(data)
        cfg = self.trainer
        task = self.task(plan.seed)
        trainer = Trainer(
            model,
            cfg,
            task=task,
            dense_optimizer=self.dense_optimizer,
            sparse_optimizer=self.sparse_optimizer,
            tracker=tracker,
            checkpoint_dir=plan.run_dir / "checkpoints",
        )
        train = PairBatches(
            data.train_pairs, data.catalog, cfg.batch_size, seed=plan.seed, shuffle=cfg.shuffle
        )
        result = trainer.fit(train)
        t_eval = time.perf_counter()
        valid = result.best_valid or task.evaluate(model, "valid")
        test_set = task.split_vectors(model, "test")
        top = exact_topk(test_set.user_vecs, test_set.item_vecs, test_set.exclude, max(self.ks))
        test = evaluate_topk(top, test_set.relevant, self.ks)
        eval_seconds = time.perf_counter() - t_eval
        metrics: dict[str, Any] = {
            "name": plan.name,
            "model": "two_tower",
            "test": test,
            "valid": valid,
            "train": result.summary()
            | {
                "parameters": sum(p.numel() for p in model.parameters()),
                "eval_seconds": eval_seconds,
            },
            "data": {
                "source": self.source_name,
                "prepare_seconds": prepare_seconds,
                **data.summary,
            },
        }
        metrics["baselines"] = {
            name: baseline_metrics(name, kwargs, data, self.ks, plan.seed)
            for name, kwargs in self.baselines.items()
        }
        for name, result_ in metrics["baselines"].items():
            tracker.log_metrics(numeric_metrics(result_["test"], f"baseline/{name}/test"))
        metrics["indexes"] = (
            evaluate_indexes(
                test_set.user_vecs,
                test_set.item_vecs,
                test_set.relevant,
                test_set.exclude,
                self.indexes,
                self.ks,
            )
            if self.indexes
            else {}
        )
        if self.world is not None and self.frame is not None:
            metrics["oracle"] = {
                "test": oracle_metrics(self.world, data, self.frame, self.ks, seed=plan.seed)
            }
            tracker.log_metrics(numeric_metrics(metrics["oracle"]["test"], "oracle/test"))
        tracker.log_metrics(numeric_metrics(valid, "valid"))
        tracker.log_metrics(numeric_metrics(metrics["indexes"], "index"))
        return Outcome(model, metrics, curves=result.curves)


def _int_ids(ids: Sequence[str], what: str) -> np.ndarray:
    try:
        return np.asarray([int(i) for i in ids], dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"{what} ids must be integers to index them: {e}") from None


@dataclass
class TwoTowerRun:
    """A reopened two-tower run: the trained model (eval mode), its data and raw events."""

    model: TwoTower
    data: RetrievalData
    frame: pl.DataFrame
    task: RetrievalTask

    def item_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(raw item ids N int64, vectors N x D float32)`` of the whole catalog."""
        _, vecs = encode_items(self.model, self.data.catalog, self.task.encode_batch_size)
        ids = _int_ids(self.data.items.ids, "item")
        return ids, np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)

    def test_user_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user indices U, vectors U x D)`` of the run's test users, as the run evaluated
        them (history as of the start of their test period)."""
        users, _, _ = relevant_and_known(self.data.splits["test"], self.data.known("test"))
        table = self.data.user_table(users, "test")
        vecs = encode_users(self.model, table, self.task.encode_batch_size)
        return users, np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)

    def user_vectors_at(self, now: int) -> tuple[np.ndarray, np.ndarray]:
        """``(raw user ids U int64, vectors U x D)`` of every user, each with the history of
        its last ``history_len`` interactions strictly before unix time ``now``."""
        table = self.data.user_table_at(self.frame, now)
        vecs = encode_users(self.model, table, self.task.encode_batch_size)
        users = np.arange(len(self.data.users), dtype=np.int64)
        raw = _int_ids(self.data.users.from_index(users), "user")
        return raw, np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)

    def evaluate(self, split: str) -> Mapping[str, Any]:
        """Full-corpus metrics of exact search on ``split`` (``valid`` or ``test``)."""
        if split not in ("valid", "test"):
            raise ValueError(
                f"a two-tower run is evaluated on valid or test (what is known before the "
                f"split is removed), got {split!r}"
            )
        return self.task.evaluate(self.model, split)


def reopen_two_tower(experiment: RetrievalExperiment, weights: Path, seed: int) -> TwoTowerRun:
    """Rebuilds ``experiment``'s data and model and loads ``weights`` (a saved ``model.pt``)."""
    experiment.prepare(keep_frame=True)
    assert experiment.data is not None and experiment.frame is not None
    model = experiment.build_model(experiment.data)
    state = torch.load(weights, map_location="cpu")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights} does not match the run's config: {e}") from None
    model.eval()
    return TwoTowerRun(model, experiment.data, experiment.frame, experiment.task(seed))
