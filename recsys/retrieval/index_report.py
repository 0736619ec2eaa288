"""Quality and speed of a :class:`~recsys.retrieval.index.VectorIndex` against exact search:
recall@k of the same queries, build time, memory and queries per second."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from recsys.retrieval.index import DEFAULT_BATCH_SIZE, VectorIndex, _as_matrix, _check_int


def recall_vs_exact(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over queries of ``|found top-k ∩ exact top-k| / |exact top-k|``.

    ``found``, ``exact``: ``Q x >=k`` item ids, best first; ``-1`` entries never match (so an
    exact list shorter than ``k``, for an index smaller than ``k``, is the denominator).
    """
    found, exact = np.asarray(found)[:, :k], np.asarray(exact)[:, :k]
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} rows, exact has {exact.shape[0]}")
    per_query = [
        len(np.intersect1d(f[f >= 0], e[e >= 0])) / max(1, int((e >= 0).sum()))
        for f, e in zip(found, exact, strict=True)
    ]
    return float(np.mean(per_query)) if per_query else float("nan")


@dataclass(frozen=True)
class IndexReport:
    """How one index did on one query set: recall@k against exact search, build time, memory
    and queries per second (best of ``repeats`` timed passes, ``threads`` FAISS threads)."""

    kind: str
    name: str
    k: int
    recall_at_k: float
    build_seconds: float
    memory_bytes: int
    qps: float
    ntotal: int
    threads: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def evaluate_index(
    index: VectorIndex,
    exact: VectorIndex | np.ndarray,
    queries: Any,
    k: int = 10,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    repeats: int = 1,
) -> IndexReport:
    """Recall@k of ``index`` against ``exact`` on ``queries`` (``Q x D``), plus its build
    time, memory and search throughput.

    ``exact``: a (flat) :class:`VectorIndex` over the same items, searched here, or its top-k
    item ids already computed (``Q x >=k``, e.g. shared by several indexes).
    """
    _check_int("repeats", repeats, 1)
    q = _as_matrix(queries, "queries", index.dim)
    if isinstance(exact, VectorIndex):
        exact_ids = exact.search(q, k, batch_size=batch_size)[1]
    else:
        exact_ids = np.asarray(exact)
        if exact_ids.ndim != 2 or exact_ids.shape[0] != len(q):
            raise ValueError(f"exact ids must be {len(q)} x k, got shape {exact_ids.shape}")
    best = math.inf
    found = exact_ids
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = index.search(q, k, batch_size=batch_size)[1]
        best = min(best, time.perf_counter() - t0)
    return IndexReport(
        kind=index.kind,
        name=index.config.label,
        k=k,
        recall_at_k=recall_vs_exact(found, exact_ids, k),
        build_seconds=index.build_seconds,
        memory_bytes=index.memory_bytes(),
        qps=len(q) / best if best > 0 else math.inf,
        ntotal=index.ntotal,
        threads=int(faiss.omp_get_max_threads()),
        params=index.params,
    )
