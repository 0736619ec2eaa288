"""ANN indexes built from a trained model's item vectors, evaluated and saved.

:func:`build_indexes` builds one :class:`~recsys.retrieval.index.VectorIndex` per config over
the item vectors, measures it against exact inner-product search on a set of query vectors
(recall@k, build seconds, memory, queries per second) and saves it under
``out_dir/<label>/`` (``index.faiss``, ``ids.npy``, ``config.json``), which is what
``recsys index build`` writes and ``recsys explore`` reloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.progress import Progress
from recsys.metrics.ranking import topk_from_scores
from recsys.retrieval.index import IndexConfig, VectorIndex
from recsys.retrieval.index_report import IndexReport, evaluate_index

__all__ = ["SavedIndex", "build_indexes"]


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
    """Builds one :class:`VectorIndex` per config over ``vectors`` (``N x D``, raw ``ids`` N),
    reports recall@k of the ``Q x D`` ``queries`` against exact inner-product search, build
    seconds, memory and qps, and saves each under ``out_dir/<label>``."""
    k = min(k, len(ids))
    exact = ids[topk_from_scores(queries @ vectors.T, k)]
    out = []
    progress = Progress(len(configs), "index build", unit="indexes")
    for cfg in configs:
        index = VectorIndex.build(vectors, ids, cfg)
        report = evaluate_index(index, exact, queries, k=k)
        out.append(SavedIndex(report, index.save(Path(out_dir) / cfg.label)))
        progress.set_postfix(**{cfg.label: f"{report.build_seconds:.2f} s"})
        progress.update()
    progress.close()
    return out
