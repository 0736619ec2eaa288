"""A finished two-tower run, reopened: the model, its vectors, and ANN indexes built from them.

The runner (:mod:`recsys.train.retrieval_experiment`) saves ``model.pt`` and the resolved config;
the data it was trained on is rebuilt from that config (the sources are deterministic, so the id
maps and vocabularies are the same), the model is rebuilt with :func:`build_two_tower` and its
weights loaded. From there:

* :func:`item_vectors`: every catalog item's vector with its raw id (``N x D``, ``N``);
* :func:`test_user_vectors`: the run's test users (those with a held-out item), history as of
  the start of their test period — the users the runner evaluated;
* :func:`user_vectors_at`: every user's vector with the history known before a time ``now``;
* :func:`build_indexes`: builds, evaluates (recall@k against exact search) and saves indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.metrics.ranking import topk_from_scores
from recsys.models.two_tower import TwoTower
from recsys.retrieval.index import IndexConfig, VectorIndex
from recsys.retrieval.index_report import IndexReport, evaluate_index
from recsys.train.retrieval import FeatureTable, encode_items, encode_users
from recsys.train.retrieval_data import RetrievalData, build_retrieval_data, jagged
from recsys.train.retrieval_experiment import RetrievalPlan, build_two_tower, relevant_and_known

__all__ = [
    "SavedIndex",
    "TwoTowerRun",
    "build_indexes",
    "item_vectors",
    "load_two_tower_run",
    "test_user_vectors",
    "user_vectors_at",
]


@dataclass
class TwoTowerRun:
    """A reopened two-tower run: the trained model, its data and the raw interaction frame."""

    model: TwoTower
    data: RetrievalData
    frame: pl.DataFrame


def _int_ids(ids: Sequence[str], what: str) -> np.ndarray:
    try:
        return np.asarray([int(i) for i in ids], dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"{what} ids must be integers to index them: {e}") from None


def load_two_tower_run(plan: RetrievalPlan, weights: Path) -> TwoTowerRun:
    """Rebuilds ``plan``'s data and model and loads ``weights`` (a saved ``model.pt``)."""
    frame = pl.concat(list(plan.source().iter_chunks()), how="vertical_relaxed")
    data = build_retrieval_data(frame, plan.data)
    model = build_two_tower(data, plan.model)
    state = torch.load(weights, map_location="cpu")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights} does not match the run's config: {e}") from None
    model.eval()
    return TwoTowerRun(model, data, frame)


def item_vectors(run: TwoTowerRun) -> tuple[np.ndarray, np.ndarray]:
    """``(raw item ids N int64, vectors N x D float32)`` of the whole catalog."""
    _, vecs = encode_items(run.model, run.data.catalog)
    ids = _int_ids(run.data.items.ids, "item")
    return ids, np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)


def test_user_vectors(run: TwoTowerRun) -> tuple[np.ndarray, np.ndarray]:
    """``(user indices U, vectors U x D)`` of the run's test users (as the runner evaluates)."""
    users, _, _ = relevant_and_known(run.data.splits["test"], run.data.known("test"))
    vecs = encode_users(run.model, run.data.user_table(users, "test"))
    return users, np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)


def user_vectors_at(run: TwoTowerRun, now: int) -> tuple[np.ndarray, np.ndarray]:
    """``(raw user ids U int64, vectors U x D)`` of every user of the run, each with the history
    of its last ``history_len`` interactions strictly before unix time ``now``."""
    data, spec = run.data, run.data.spec
    frame = run.frame
    if spec.positive_labels:
        frame = frame.filter(pl.any_horizontal(pl.col(c) > 0 for c in spec.positive_labels))
    frame = frame.filter(pl.col(spec.timestamp) < now)
    n_users = len(data.users)
    last = (
        frame.select(
            pl.Series("u", data.users.to_index(frame[spec.user].cast(pl.Utf8))),
            pl.Series("i", data.items.to_index(frame[spec.item].cast(pl.Utf8))),
            pl.col(spec.timestamp).alias("t"),
            pl.col(spec.order).alias("o"),
        )
        .sort(["u", "t", "o"])
        .group_by("u", maintain_order=True)
        .agg(pl.col("i").tail(spec.history_len).alias("h"))
    )
    per_user = pl.DataFrame({"u": np.arange(n_users, dtype=np.int64)}).join(
        last, on="u", how="left", maintain_order="left"
    )
    hist = per_user["h"].fill_null([])
    lengths = hist.list.len().to_numpy().astype(np.int32)
    values = hist.explode().drop_nulls().to_numpy().astype(np.int64)
    users = np.arange(n_users, dtype=np.int64)
    bags = [(np.ones(n_users, np.int32), data.user_codes["user"]), (lengths, values)]
    bags += [(np.ones(n_users, np.int32), data.user_codes[f]) for f in spec.user_features]
    table = FeatureTable(torch.zeros(n_users, 0), jagged(data.user_keys, bags))
    vecs = encode_users(run.model, table)
    raw = _int_ids(data.users.from_index(users), "user")
    return raw, np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)


@dataclass
class SavedIndex:
    """One built index: its report against exact search and the folder it was saved to."""

    report: IndexReport
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "path": str(self.path)}


def build_indexes(
    ids: np.ndarray,
    vectors: np.ndarray,
    queries: np.ndarray,
    configs: Sequence[IndexConfig],
    out_dir: Path,
    k: int = 10,
) -> list[SavedIndex]:
    """Builds one :class:`VectorIndex` per config over ``vectors`` (``N x D``, raw ``ids``),
    reports recall@k of the ``Q x D`` ``queries`` against exact inner-product search, build
    seconds, memory and qps, and saves each under ``out_dir/<label>``."""
    k = min(k, len(ids))
    exact = ids[topk_from_scores(queries @ vectors.T, k)]
    out = []
    for cfg in configs:
        index = VectorIndex.build(vectors, ids, cfg)
        report = evaluate_index(index, exact, queries, k=k)
        out.append(SavedIndex(report, index.save(Path(out_dir) / cfg.label)))
    return out
