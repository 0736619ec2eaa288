"""Streaming accumulators: feed batches, get the exact metrics of everything seen.

The accumulators keep every label and probability in growing numpy buffers (amortized
doubling), so :meth:`BinaryMetricAccumulator.compute` equals :func:`binary_metrics` on the
concatenation of all updates, bit for bit. Memory is 9 bytes per example and task.

Example:
    >>> import numpy as np
    >>> acc = MultiTaskAccumulator(["like", "share"])
    >>> acc.update(np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.2], [0.3, 0.6]]))
    >>> acc.update(np.array([[0, 0]]), np.array([[0.1, 0.4]]))
    >>> acc.compute()["like"]["auc"], acc.mean("auc")
    (1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys.metrics.binary import (
    as_flat_array,
    check_labels,
    check_probs,
    metrics_of_checked,
    reliability_bins,
)

__all__ = ["BinaryMetricAccumulator", "MultiTaskAccumulator"]

_INITIAL_CAPACITY = 1024


class _GrowingBuffer:
    """A 1-D numpy array that grows by doubling; ``view()`` is the filled prefix."""

    def __init__(self, dtype: type) -> None:
        self._data = np.empty(0, dtype=dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, values: np.ndarray) -> None:
        need = self._size + values.shape[0]
        if need > self._data.shape[0]:
            capacity = max(_INITIAL_CAPACITY, self._data.shape[0])
            while capacity < need:
                capacity *= 2
            grown = np.empty(capacity, dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : need] = values
        self._size = need

    def view(self) -> np.ndarray:
        return self._data[: self._size]

    def clear(self) -> None:
        self._data = np.empty(0, dtype=self._data.dtype)
        self._size = 0


class BinaryMetricAccumulator:
    """Exact streaming binary metrics for one task.

    ``update`` takes labels and probabilities of shape ``B`` or ``B x 1`` (numpy arrays or torch
    tensors, any device); ``compute`` returns the keys of
    :func:`recsys.metrics.binary.binary_metrics` (``auc`` and ``ne`` are ``nan`` while only one
    class has been seen).
    """

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = eps
        self._labels = _GrowingBuffer(np.uint8)
        self._probs = _GrowingBuffer(np.float64)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def count(self) -> int:
        """Number of examples seen so far."""
        return len(self._labels)

    def update(self, labels: Any, probs: Any) -> None:
        """Adds one batch. Raises ValueError (and stores nothing) on bad input."""
        y = as_flat_array(labels, "labels")
        p = as_flat_array(probs, "probs")
        if y.shape != p.shape:
            raise ValueError(
                f"labels and probs must have the same length, got {y.shape[0]} and {p.shape[0]}"
            )
        check_labels(y)
        check_probs(p)
        self._append_checked(y, p)

    def _append_checked(self, y: np.ndarray, p: np.ndarray) -> None:
        self._labels.append(y.astype(np.uint8))
        self._probs.append(p)

    def compute(self) -> dict[str, float | int]:
        """Metrics of everything seen: auc, logloss, ne, calibration, count, positive_rate.

        Raises:
            ValueError: if nothing has been seen.
        """
        if self.count == 0:
            raise ValueError("BinaryMetricAccumulator.compute() called before any update")
        y = self._labels.view().astype(np.float64)
        return metrics_of_checked(y, self._probs.view(), self.eps)

    def reliability(self, n_bins: int = 10) -> dict[str, list[float]]:
        """:func:`~recsys.metrics.binary.reliability_bins` of everything seen."""
        return reliability_bins(self._labels.view(), self._probs.view(), n_bins)

    def reset(self) -> None:
        """Forgets everything seen."""
        self._labels.clear()
        self._probs.clear()

    def merge(self, other: BinaryMetricAccumulator) -> BinaryMetricAccumulator:
        """Adds everything ``other`` has seen to this accumulator; returns ``self``."""
        if not isinstance(other, BinaryMetricAccumulator):
            raise TypeError(f"can only merge a BinaryMetricAccumulator, got {type(other).__name__}")
        self._labels.append(other._labels.view().copy())
        self._probs.append(other._probs.view().copy())
        return self


class MultiTaskAccumulator:
    """One :class:`BinaryMetricAccumulator` per task.

    ``update`` takes labels and probabilities of shape ``B x T`` with ``T = len(task_names)``
    in ``task_names`` order (``B`` is accepted when ``T == 1``). ``compute`` returns
    ``{task: {"auc", "logloss", "ne", "calibration", "count", "positive_rate"}}``; ``mean``
    averages one metric over the tasks.
    """

    def __init__(self, task_names: Sequence[str], eps: float = 1e-7) -> None:
        names = list(task_names)
        if not names:
            raise ValueError("MultiTaskAccumulator needs at least one task name")
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        self.task_names: tuple[str, ...] = tuple(names)
        self.tasks: dict[str, BinaryMetricAccumulator] = {
            t: BinaryMetricAccumulator(eps=eps) for t in names
        }

    def _as_matrix(self, x: Any, name: str) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        arr = np.asarray(x)
        n_tasks = len(self.task_names)
        if arr.ndim == 1 and n_tasks == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != n_tasks:
            raise ValueError(
                f"{name} must have shape B x {n_tasks} (tasks {list(self.task_names)}), "
                f"got shape {tuple(arr.shape)}"
            )
        return arr

    def update(self, labels: Any, probs: Any) -> None:
        """Adds one ``B x T`` batch. Validates every task before storing anything."""
        y = self._as_matrix(labels, "labels")
        p = self._as_matrix(probs, "probs")
        if y.shape[0] != p.shape[0]:
            raise ValueError(
                f"labels and probs must have the same batch size, got {y.shape[0]} and {p.shape[0]}"
            )
        checked = []
        for j, task in enumerate(self.task_names):
            try:
                yj = as_flat_array(y[:, j], "labels")
                pj = as_flat_array(p[:, j], "probs")
                check_labels(yj)
                check_probs(pj)
            except ValueError as e:
                raise ValueError(f"task {task!r}: {e}") from e
            checked.append((yj, pj))
        for task, (yj, pj) in zip(self.task_names, checked):
            self.tasks[task]._append_checked(yj, pj)

    def compute(self) -> dict[str, dict[str, float | int]]:
        """``{task: metrics}`` for every task, in ``task_names`` order."""
        return {t: self.tasks[t].compute() for t in self.task_names}

    def mean(self, metric: str = "auc") -> float:
        """Mean of ``metric`` over tasks, ignoring tasks where it is ``nan`` (nan if all are)."""
        values = [float(m[metric]) for m in self.compute().values()]
        finite = [v for v in values if not math.isnan(v)]
        return sum(finite) / len(finite) if finite else math.nan

    def reliability(self, n_bins: int = 10) -> dict[str, dict[str, list[float]]]:
        """``{task: reliability bins}`` (:meth:`BinaryMetricAccumulator.reliability`)."""
        return {t: self.tasks[t].reliability(n_bins) for t in self.task_names}

    def reset(self) -> None:
        """Forgets everything seen, for every task."""
        for acc in self.tasks.values():
            acc.reset()

    def merge(self, other: MultiTaskAccumulator) -> MultiTaskAccumulator:
        """Adds everything ``other`` has seen (same task names) to this one; returns ``self``."""
        if not isinstance(other, MultiTaskAccumulator):
            raise TypeError(f"can only merge a MultiTaskAccumulator, got {type(other).__name__}")
        if other.task_names != self.task_names:
            raise ValueError(
                f"cannot merge accumulators with different tasks: {list(self.task_names)} "
                f"and {list(other.task_names)}"
            )
        for t in self.task_names:
            self.tasks[t].merge(other.tasks[t])
        return self
