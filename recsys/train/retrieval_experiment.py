"""One retrieval run: a two-tower model and its baselines on a per-user chronological split.

The config layer (:mod:`recsys.config.retrieval`) turns a Hydra config into a
:class:`RetrievalPlan` of plain objects; this module knows nothing of Hydra. A run:

1. reads the raw source into memory and builds :class:`~recsys.train.retrieval_data.RetrievalData`;
2. trains :class:`~recsys.models.two_tower.TwoTower` with
   :func:`~recsys.train.retrieval.train_two_tower` on the train interactions;
3. scores the *full corpus* for every user with a relevant item in valid (test): exact
   brute-force scores, the user's known items removed (valid: train; test: train + valid) from
   the candidates *and* from the relevant set, then Recall/NDCG/HitRate@K and MRR
   (:func:`evaluate_topk`);
4. the same for the baselines (most-popular, implicit ALS), fitted on train for valid and on
   train + valid for test (they have no history features to fold new interactions in);
5. searches the test users' vectors through every configured ANN index (:func:`evaluate_indexes`);
6. writes ``metrics.json`` and ``model.pt`` and records the run in MLflow.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys.data.source import RawSource
from recsys.metrics.ranking import ranking_metrics, topk_from_scores
from recsys.models.two_tower import TwoTower
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.retrieval.baselines import ImplicitMF, MostPopular
from recsys.retrieval.index import IndexConfig, VectorIndex
from recsys.retrieval.index_report import evaluate_index
from recsys.train.experiment import closing_lines, seed_everything
from recsys.train.retrieval import (
    RetrievalTrainerConfig,
    encode_items,
    encode_users,
    train_two_tower,
)
from recsys.train.retrieval_data import RetrievalData, RetrievalDataSpec, build_retrieval_data
from recsys.train.tracking import Tracker, TrackingConfig, numeric_metrics
from recsys.types import FeatureSpec, SparseFeature

__all__ = [
    "RetrievalPlan",
    "TwoTowerSettings",
    "build_two_tower",
    "evaluate_indexes",
    "evaluate_topk",
    "relevant_and_known",
    "run_retrieval_experiment",
    "summary_lines",
]

log = logging.getLogger(__name__)

DEFAULT_KS = (10, 20, 50, 100)


@dataclass
class TwoTowerSettings:
    """The two-tower architecture (see :class:`~recsys.models.two_tower.TwoTower`).

    Attributes:
        embedding_dim: dim of every table unless ``per_table`` says otherwise.
        per_table: :class:`~recsys.modules.embedding.EmbeddingConfig` overrides by feature.
        user_mlp, item_mlp: hidden sizes of the towers.
        output_dim, temperature, learn_temperature, min_temperature, max_temperature, dropout:
            as in ``TwoTower``.
    """

    embedding_dim: int = 32
    per_table: dict[str, dict] = field(default_factory=dict)
    user_mlp: list[int] = field(default_factory=lambda: [128])
    item_mlp: list[int] = field(default_factory=lambda: [128])
    output_dim: int = 64
    temperature: float = 0.05
    learn_temperature: bool = False
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    dropout: float = 0.0


@dataclass
class RetrievalPlan:
    """Everything one retrieval run needs, as plain objects.

    ``indexes`` are keyword dicts of ``recsys.retrieval.index.IndexConfig`` (built only when
    that module imports); ``baselines`` maps ``most_popular`` / ``als`` to keyword arguments
    (``{}`` for most-popular, :class:`~recsys.retrieval.baselines.ImplicitMF` ones for ALS).
    """

    name: str
    run_dir: Path
    output_root: Path
    seed: int
    source: Callable[[], RawSource]
    data: RetrievalDataSpec
    model: TwoTowerSettings
    trainer: RetrievalTrainerConfig
    ks: tuple[int, ...] = DEFAULT_KS
    indexes: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    params: Mapping[str, Any] = field(default_factory=dict)
    resolved_config: str = ""


def build_two_tower(data: RetrievalData, settings: TwoTowerSettings) -> TwoTower:
    """A :class:`TwoTower` over ``data``'s user- and item-side features (plain tables;
    multi-valued bags pooled by mean)."""
    emb = EmbeddingConfig(dim=settings.embedding_dim, per_table=dict(settings.per_table))

    def collection(keys: Sequence[str]) -> torch.nn.Module:
        sparse = tuple(
            SparseFeature(
                k, data.cardinalities[k], multi_hot=k in data.multi_features, pooling="mean"
            )
            for k in keys
        )
        spec = FeatureSpec(dense=(), sparse=sparse, labels=())
        known = {k: v for k, v in emb.per_table.items() if k in keys}
        return build_embeddings(
            embedding_tables(spec, EmbeddingConfig(emb.dim, known, emb.init)), fused=False
        )

    unknown = set(settings.per_table) - set(data.user_keys) - set(data.item_keys)
    if unknown:
        raise ValueError(f"per_table names unknown features {sorted(unknown)}")
    return TwoTower(
        collection(data.user_keys),
        collection(data.item_keys),
        user_dense_dim=0,
        item_dense_dim=0,
        user_mlp=settings.user_mlp,
        item_mlp=settings.item_mlp,
        output_dim=settings.output_dim,
        temperature=settings.temperature,
        learn_temperature=settings.learn_temperature,
        min_temperature=settings.min_temperature,
        max_temperature=settings.max_temperature,
        dropout=settings.dropout,
    )


def relevant_and_known(
    target: sp.csr_matrix, known: sp.csr_matrix
) -> tuple[np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """``(users, relevant, exclude)`` of one evaluation split.

    ``users``: the users with at least one item of ``target`` that is not in ``known``;
    ``relevant``: those rows of ``target`` minus ``known`` (an item seen before cannot be
    recommended, so it cannot count); ``exclude``: those rows of ``known``.
    """
    fresh = (target - target.multiply(known.sign())).tocsr()
    fresh.eliminate_zeros()
    users = np.flatnonzero(np.diff(fresh.indptr) > 0)
    return users, fresh[users], known.tocsr()[users]


def evaluate_topk(
    topk: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int]
) -> dict[str, float | int]:
    """Recall/NDCG/HitRate@K and MRR of ``U x Kmax`` ids against ``U`` relevant rows."""
    return ranking_metrics(topk, relevant, ks)


def exact_topk(
    user_vecs: np.ndarray, item_vecs: np.ndarray, exclude: sp.csr_matrix, k: int
) -> np.ndarray:
    """Brute-force top-``k`` by inner product, ``exclude``'s entries removed: ``U x k``."""
    out = np.empty((user_vecs.shape[0], k), dtype=np.int64)
    step = max(1, (1 << 22) // max(1, item_vecs.shape[0]))
    for start in range(0, user_vecs.shape[0], step):
        scores = user_vecs[start : start + step] @ item_vecs.T
        out[start : start + step] = topk_from_scores(scores, k, exclude[start : start + step])
    return out


def _filter_ids(ids: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """The first ``k`` ids of each row not in ``exclude``'s row (``-1`` pads)."""
    out = np.full((ids.shape[0], k), -1, dtype=np.int64)
    for r in range(ids.shape[0]):
        seen = exclude.indices[exclude.indptr[r] : exclude.indptr[r + 1]]
        row = ids[r][(ids[r] >= 0) & ~np.isin(ids[r], seen)][:k]
        out[r, : row.shape[0]] = row
    return out


def evaluate_indexes(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    relevant: sp.csr_matrix,
    exclude: sp.csr_matrix,
    configs: Sequence[Mapping[str, Any]],
    ks: Sequence[int],
) -> dict[str, dict[str, Any]]:
    """Ranking metrics through each ANN index, plus the index's own figures.

    For every config (``recsys.retrieval.index.IndexConfig`` keys): build a
    :class:`~recsys.retrieval.index.VectorIndex` over ``item_vecs`` (``N x D``, ids = rows),
    report :func:`~recsys.retrieval.index.evaluate_index` on the ``U x D`` user vectors
    (``recall@10_vs_exact``: overlap of the index's raw top-10 with exact search, before any
    exclusion; ``build_seconds``, ``memory_bytes``, ``qps``), then search
    ``max(ks)`` + the most known items of any user, drop each user's known items
    (``exclude``) and compute the ranking metrics against ``relevant``.
    """
    k_max = max(ks)
    items = np.ascontiguousarray(item_vecs, dtype=np.float32)
    queries = np.ascontiguousarray(user_vecs, dtype=np.float32)
    fetch = min(items.shape[0], k_max + int(np.diff(exclude.indptr).max(initial=0)))
    exact10 = topk_from_scores(queries @ items.T, min(10, items.shape[0]))
    out: dict[str, dict[str, Any]] = {}
    for raw in configs:
        cfg = IndexConfig.from_dict(dict(raw))
        index = VectorIndex.build(items, np.arange(items.shape[0], dtype=np.int64), cfg)
        report = evaluate_index(index, exact10, queries, k=exact10.shape[1])
        _, found = index.search(queries, fetch)
        top = _filter_ids(found, exclude, k_max)
        out[cfg.label] = {
            **evaluate_topk(top, relevant, ks),
            "recall@10_vs_exact": report.recall_at_k,
            "build_seconds": report.build_seconds,
            "memory_bytes": report.memory_bytes,
            "qps": report.qps,
            "faiss_threads": report.threads,
            "params": report.params,
        }
    return out


def _baseline_metrics(
    name: str, kwargs: Mapping[str, Any], data: RetrievalData, ks: Sequence[int], seed: int
) -> dict[str, Any]:
    """Valid (fit on train) and test (fit on train + valid) metrics of one baseline."""
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    for split in ("valid", "test"):
        known = data.known(split)
        users, relevant, _ = relevant_and_known(data.splits[split], known)
        if name == "most_popular":
            model: MostPopular | ImplicitMF = MostPopular()
        elif name == "als":
            model = ImplicitMF("als", **{"seed": seed, **dict(kwargs)})
        else:
            raise ValueError(f"unknown retrieval baseline {name!r}; known: most_popular, als")
        model.fit(known)
        top = model.recommend(users, max(ks), exclude=known)
        result[split] = evaluate_topk(top, relevant, ks)
    result["seconds"] = time.perf_counter() - t0
    return result


def _model_split_metrics(
    model: TwoTower, data: RetrievalData, item_vecs: np.ndarray, split: str, ks: Sequence[int]
) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    users, relevant, exclude = relevant_and_known(data.splits[split], data.known(split))
    user_vecs = encode_users(model, data.user_table(users, split)).cpu().numpy()
    top = exact_topk(user_vecs, item_vecs, exclude, max(ks))
    return evaluate_topk(top, relevant, ks), (user_vecs, relevant, exclude, top)


def run_retrieval_experiment(plan: RetrievalPlan) -> dict[str, Any]:
    """Runs ``plan``; returns (and writes) the content of ``metrics.json``."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(plan.seed)
    t0 = time.perf_counter()
    source = plan.source()
    frame = pl.concat(list(source.iter_chunks()), how="vertical_relaxed")
    data = build_retrieval_data(frame, plan.data)
    prepare_seconds = time.perf_counter() - t0
    del frame
    tracker = Tracker(plan.tracking, plan.output_root)
    tracker.start(plan.params)
    status = "FAILED"
    try:
        tracker.record_config(plan.run_dir, plan.resolved_config)
        seed_everything(plan.seed)
        model = build_two_tower(data, plan.model)
        train = train_two_tower_logged(model, data, plan.trainer, tracker)
        _, item_tensor = encode_items(model, data.catalog)
        item_vecs = item_tensor.cpu().numpy()
        t_eval = time.perf_counter()
        valid, _ = _model_split_metrics(model, data, item_vecs, "valid", plan.ks)
        test, (user_vecs, relevant, exclude, _) = _model_split_metrics(
            model, data, item_vecs, "test", plan.ks
        )
        eval_seconds = time.perf_counter() - t_eval
        metrics: dict[str, Any] = {
            "name": plan.name,
            "model": "two_tower",
            "test": test,
            "valid": valid,
            "train": train
            | {
                "parameters": sum(p.numel() for p in model.parameters()),
                "eval_seconds": eval_seconds,
            },
            "data": {
                "source": getattr(source, "name", None),
                "prepare_seconds": prepare_seconds,
                **data.summary,
            },
        }
        metrics["baselines"] = {
            name: _baseline_metrics(name, kwargs, data, plan.ks, plan.seed)
            for name, kwargs in plan.baselines.items()
        }
        for name, result in metrics["baselines"].items():
            _log(tracker, result["test"], f"baseline/{name}/test")
        metrics["indexes"] = _test_indexes(user_vecs, item_vecs, relevant, exclude, plan)
        torch.save(model.state_dict(), plan.run_dir / "model.pt")
        metrics_path = plan.run_dir / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2, default=float))
        _log(tracker, test, "test")
        _log(tracker, valid, "valid")
        _log(tracker, metrics["indexes"], "index")
        tracker.log_artifact(metrics_path)
        tracker.log_model(model)
        status = "FINISHED"
        metrics["run_id"] = tracker.run_id
        return metrics
    finally:
        tracker.end(status)


def train_two_tower_logged(
    model: TwoTower, data: RetrievalData, config: RetrievalTrainerConfig, tracker: Tracker
) -> dict[str, Any]:
    """:func:`~recsys.train.retrieval.train_two_tower` on the train pairs; logs epoch losses."""
    result = train_two_tower(model, data.train_pairs, config, data.catalog)
    for epoch, loss in enumerate(result["epoch_losses"]):
        tracker.log_metrics({"train/epoch_loss": loss}, step=epoch + 1)
    return result


def _test_indexes(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    relevant: sp.csr_matrix,
    exclude: sp.csr_matrix,
    plan: RetrievalPlan,
) -> dict[str, Any]:
    """:func:`evaluate_indexes` on the test users (empty when no index is configured)."""
    if not plan.indexes:
        return {}
    return evaluate_indexes(user_vecs, item_vecs, relevant, exclude, plan.indexes, plan.ks)


def _log(tracker: Tracker, metrics: Mapping[str, Any], prefix: str) -> None:
    """Logs the numbers of ``metrics``; ``@`` (not allowed by MLflow) becomes ``_at_``."""
    values = numeric_metrics(metrics, prefix)
    tracker.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()})


def _fmt(m: Mapping[str, Any]) -> str:
    return f"recall@10 {m['recall@10']:.4f}  ndcg@10 {m['ndcg@10']:.4f}  mrr {m['mrr']:.4f}"


def summary_lines(metrics: Mapping[str, Any], metrics_path: Path) -> list[str]:
    """The closing lines of a retrieval run: model, baselines and indexes; the file last."""
    lines = [f"{metrics['name']}: model {metrics['model']}", f"test  {_fmt(metrics['test'])}"]
    for name, result in metrics.get("baselines", {}).items():
        lines.append(f"baseline {name}: test  {_fmt(result['test'])}")
    for name, result in metrics.get("indexes", {}).items():
        if isinstance(result, Mapping):
            lines.append(
                f"index {name}: test recall@10 {result['recall@10']:.4f}  "
                f"recall@10 vs exact {result['recall@10_vs_exact']:.3f}  "
                f"build {result['build_seconds']:.2f} s  {result['qps']:,.0f} qps"
            )
    return lines + closing_lines(metrics["train"], metrics_path)
