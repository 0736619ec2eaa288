"""Evaluation of a ranker over a batch loader, per task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.metrics.streaming import MultiTaskAccumulator
from recsys.types import Batch

METRIC_KEYS = ("auc", "logloss", "ne", "calibration")

#: ``(labels N x T, probs N x T) -> (labels, probs)`` of every process of a data-parallel run
Gather = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    task_names: tuple[str, ...],
    device: torch.device | None = None,
    reliability_bins: int = 0,
    gather: Gather | None = None,
) -> dict:
    """Streams the model over ``batches`` and returns metrics.

    With ``gather`` (a data-parallel run, where each process evaluates its own part of the
    split), this process's labels and probabilities are exchanged for everyone's before the
    metrics are computed, so every process returns the metrics of the whole split.

    Single-task models give ``{"auc", "logloss", "ne", "calibration", "count", ...}``;
    multi-task models give ``{task: {...}, ..., "mean_auc": float}``. With
    ``reliability_bins > 0`` the result also has ``"reliability": {task: bins}``
    (:func:`recsys.metrics.binary.reliability_bins`).
    """
    acc = MultiTaskAccumulator(list(task_names))
    was_training = model.training
    model.eval()
    seen = 0
    local: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for batch in batches:
            if device is not None and device.type != "cpu":
                batch = batch.to(device, non_blocking=True)
            pair = batch.labels.cpu(), torch.sigmoid(model(batch.dense, batch.sparse)).cpu()
            if gather is None:
                acc.update(*pair)
            else:
                local.append(pair)
            seen += len(batch)
    finally:
        model.train(was_training)
    if gather is not None:
        width = len(task_names)
        labels, probs = gather(
            np.concatenate([y.numpy() for y, _ in local]) if local else np.zeros((0, width)),
            np.concatenate([p.float().numpy() for _, p in local])
            if local
            else np.zeros((0, width)),
        )
        seen = len(labels)
        if seen:
            acc.update(labels, probs)
    if seen == 0:
        raise ValueError("evaluation got no batches: the split is empty")
    out = format_task_metrics(acc.compute(), task_names)
    if reliability_bins > 0:
        out["reliability"] = acc.reliability(reliability_bins)
    return out


def format_task_metrics(
    per_task: Mapping[str, Mapping[str, Any]], task_names: tuple[str, ...]
) -> dict:
    """Flattens one task's metrics to the top level; keeps multi-task metrics per task name."""
    if len(task_names) == 1:
        return dict(per_task[task_names[0]])
    out: dict[str, Any] = {t: dict(per_task[t]) for t in task_names}
    out["mean_auc"] = float(sum(out[t]["auc"] for t in task_names) / len(task_names))
    return out


def headline(metrics: Mapping[str, Any], key: str = "auc") -> float:
    """The single number early stopping watches: ``key`` for one task, its mean over tasks else."""
    if key in metrics and not isinstance(metrics[key], Mapping):
        return float(metrics[key])
    values = [float(v[key]) for v in metrics.values() if isinstance(v, Mapping) and key in v]
    if not values:
        raise KeyError(f"metric {key!r} not found in evaluation results {sorted(metrics)}")
    return sum(values) / len(values)
