"""Parity: an exported ONNX model under ONNX Runtime against the trained model in PyTorch eager.

:func:`ranker_parity` streams a split of the prepared data through both (the model's own
``forward(dense, KJT)`` with TorchRec's collection, and ONNX Runtime on the feeds the
inference service would send) and reports the largest absolute difference of the
probabilities per task; :func:`tower_parity` does the same for the vectors of a feature table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.tables import take_rows
from recsys.export.manifest import ids_input, lengths_input
from recsys.types import Batch

__all__ = ["ParityReport", "kjt_feeds", "ranker_parity", "session", "tower_parity"]

#: Default largest allowed |ONNX Runtime - eager| on probabilities (the issue's bound).
TOLERANCE = 1e-5


@dataclass
class ParityReport:
    """Largest absolute differences over ``rows`` rows of ``split`` (per output)."""

    split: str
    rows: int
    max_abs_diff: dict[str, float]
    tolerance: float

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return self.worst <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "worst": self.worst,
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


def session(path: str, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads (quiet logging)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def kjt_feeds(kjt: KeyedJaggedTensor, features: Sequence[str]) -> dict[str, np.ndarray]:
    """``<f>.ids`` int64 / ``<f>.lengths`` int32 arrays of ``features`` from a KJT."""
    per_key = kjt.to_dict()
    feeds: dict[str, np.ndarray] = {}
    for f in features:
        jt = per_key[f]
        feeds[ids_input(f)] = jt.values().to(torch.int64).numpy()
        feeds[lengths_input(f)] = jt.lengths().to(torch.int32).numpy()
    return feeds


def ranker_parity(
    model: nn.Module,
    onnx_session: ort.InferenceSession,
    batches: Iterable[Batch],
    features: Sequence[str],
    tasks: Sequence[str],
    *,
    split: str,
    max_rows: int | None = None,
    tolerance: float = TOLERANCE,
) -> ParityReport:
    """Largest |ORT - eager| per task over the rows of ``batches`` (at most ``max_rows``)."""
    worst = dict.fromkeys(tasks, 0.0)
    rows = 0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            if max_rows is not None and rows >= max_rows:
                break
            eager = torch.sigmoid(model(batch.dense, batch.sparse)).numpy()
            feeds = kjt_feeds(batch.sparse, features)
            if batch.dense.shape[1]:
                feeds["dense"] = batch.dense.numpy()
            got = onnx_session.run(list(tasks), feeds)
            for t, task in enumerate(tasks):
                diff = float(np.abs(got[t] - eager[:, t]).max(initial=0.0))
                worst[task] = max(worst[task], diff)
            rows += len(batch)
    return ParityReport(split, rows, worst, tolerance)


def tower_parity(
    tower: nn.Module,
    onnx_session: ort.InferenceSession,
    sparse: KeyedJaggedTensor,
    features: Sequence[str],
    *,
    split: str,
    batch_size: int = 4096,
    tolerance: float = TOLERANCE,
) -> ParityReport:
    """Largest |ORT - eager| of the unit vectors of every row of a feature table's ``sparse``."""
    worst = 0.0
    n = sparse.stride()
    tower.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = torch.arange(start, min(n, start + batch_size))
            part = take_rows(sparse, rows)
            eager = tower(None, part).numpy()
            (got,) = onnx_session.run(["vector"], kjt_feeds(part, features))
            worst = max(worst, float(np.abs(got - eager).max(initial=0.0)))
    return ParityReport(split, n, {"vector": worst}, tolerance)
