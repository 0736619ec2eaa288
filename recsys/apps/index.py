"""``recsys index build index.run_dir=DIR [index.kind=hnsw | [flat,hnsw,...]]``.

A finished two-tower run -> its item vectors -> one saved FAISS index per kind under
``RUN/indexes/<kind>/`` (:func:`recsys.retrieval.build.build_indexes`), with recall@k against
exact search on the run's test users, and ``RUN/indexes/report.json``.
"""

from __future__ import annotations

import json
from typing import Any

from recsys.config.commands import index_request
from recsys.retrieval.build import build_indexes
from recsys.train.retrieval_run import reopen_two_tower

__all__ = ["index_build"]


def index_build(cfg: Any) -> tuple[dict[str, Any], list[str]]:
    """``(report, printed lines)``; the saved paths come last."""
    req = index_request(cfg)
    run = reopen_two_tower(req.experiment, req.run_dir / "model.pt", req.seed)
    ids, vecs = run.item_vectors()
    _, queries = run.test_user_vectors()
    saved = build_indexes(ids, vecs, queries, req.configs, req.run_dir / "indexes", k=req.k)
    report = {
        "run_dir": str(req.run_dir),
        "items": len(ids),
        "queries": len(queries),
        "indexes": {s.report.name: s.to_dict() for s in saved},
    }
    path = req.run_dir / "indexes" / "report.json"
    path.write_text(json.dumps(report, indent=2, default=float))
    lines = [f"{req.run_name}: {len(ids)} item vectors, {len(queries)} test users"]
    for s in saved:
        r = s.report
        lines.append(
            f"index {r.name}: recall@{r.k} vs exact {r.recall_at_k:.3f}  "
            f"build {r.build_seconds:.3f} s  memory {r.memory_bytes / 2**20:.2f} MiB  "
            f"{r.qps:,.0f} qps"
        )
    lines += [f"index: {s.path}" for s in saved]
    return report, lines
