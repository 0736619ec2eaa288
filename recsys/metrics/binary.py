"""Binary-classification metrics as pure functions on 1-D arrays.

Every function accepts numpy arrays, Python sequences or torch tensors (converted with
``.detach().cpu().numpy()``, so torch is never imported here). Inputs of shape ``B`` or
``B x 1`` are accepted and flattened; labels must be 0/1, probabilities finite and in
``[0, 1]``. Bad input raises :class:`ValueError` naming the argument.

Example:
    >>> import numpy as np
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "METRIC_NAMES",
    "as_flat_array",
    "auc",
    "binary_metrics",
    "calibration",
    "logloss",
    "normalized_entropy",
    "reliability_bins",
]

METRIC_NAMES = ("auc", "logloss", "ne", "calibration", "count", "positive_rate")


def as_flat_array(x: Any, name: str) -> np.ndarray:
    """Converts an array-like or torch tensor of shape ``B`` or ``B x 1`` to a float64 ``B`` array.

    Raises ValueError for other shapes and for NaN or infinite values.
    """
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape B or B x 1, got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains NaN or infinite values (first at index {bad})")
    return arr


def check_labels(labels: np.ndarray) -> None:
    """Raises ValueError naming the first label that is not 0 or 1."""
    bad = (labels != 0.0) & (labels != 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be 0 or 1, got {labels[i]!r} at index {i}")


def check_probs(probs: np.ndarray) -> None:
    """Raises ValueError naming the first probability outside ``[0, 1]``."""
    bad = (probs < 0.0) | (probs > 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"probs must lie in [0, 1], got {probs[i]!r} at index {i}")


def _pair(labels: Any, values: Any, value_name: str) -> tuple[np.ndarray, np.ndarray]:
    y = as_flat_array(labels, "labels")
    v = as_flat_array(values, value_name)
    if y.shape != v.shape:
        raise ValueError(
            f"labels and {value_name} must have the same length, got {y.shape[0]} and {v.shape[0]}"
        )
    if y.shape[0] == 0:
        raise ValueError("labels and predictions are empty")
    check_labels(y)
    return y, v


def _auc_checked(y: np.ndarray, s: np.ndarray) -> float:
    """AUC of validated arrays (Mann–Whitney U with average ranks for ties), O(n log n)."""
    n = y.shape[0]
    n_pos = float(y.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "positive" if n_neg == 0 else "negative"
        raise ValueError(f"AUC is undefined when only one class is present (all {n} labels {only})")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Tie groups: [starts[i], ends[i]) in sorted order share one score and one average rank.
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s_sorted)) + 1))
    ends = np.append(starts[1:], n)
    avg_rank = (starts + 1 + ends) / 2.0  # mean of 1-based ranks starts+1 .. ends
    # Sum of ranks of positives, computed per tie group to avoid materializing all ranks.
    pos_per_group = np.add.reduceat(y[order], starts)
    rank_sum = float(np.dot(pos_per_group, avg_rank))
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def auc(labels: Any, scores: Any) -> float:
    """Exact ROC AUC; tied scores count one half (average ranks, Mann–Whitney U).

    Args:
        labels: ``B`` or ``B x 1`` of 0/1.
        scores: ``B`` or ``B x 1`` of any finite real scores (probabilities or logits).

    Raises:
        ValueError: on shape mismatch, NaN/inf, non-binary labels, or a single class.
    """
    y, s = _pair(labels, scores, "scores")
    return _auc_checked(y, s)


def _logloss_checked(y: np.ndarray, p: np.ndarray, eps: float) -> float:
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def logloss(labels: Any, probs: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[eps, 1 - eps]``."""
    y, p = _pair(labels, probs, "probs")
    check_probs(p)
    return _logloss_checked(y, p, eps)


def _entropy(rate: float) -> float:
    return -(rate * math.log(rate) + (1.0 - rate) * math.log1p(-rate))


def normalized_entropy(labels: Any, probs: Any, eps: float = 1e-7) -> float:
    """Normalized entropy: logloss divided by the entropy of the base rate ``mean(labels)``.

    1.0 is what always predicting the base rate scores; lower is better.

    Raises:
        ValueError: if only one class is present (the base-rate entropy is 0).
    """
    y, p = _pair(labels, probs, "probs")
    check_probs(p)
    rate = float(y.mean())
    if rate in (0.0, 1.0):
        raise ValueError("normalized entropy is undefined when only one class is present")
    return _logloss_checked(y, p, eps) / _entropy(rate)


def calibration(labels: Any, probs: Any) -> float:
    """Mean prediction over mean label (1.0 = calibrated on average, > 1 = over-predicting).

    Raises:
        ValueError: if there is no positive label.
    """
    y, p = _pair(labels, probs, "probs")
    check_probs(p)
    mean_label = float(y.mean())
    if mean_label == 0.0:
        raise ValueError("calibration is undefined when there are no positive labels")
    return float(p.mean()) / mean_label


def reliability_bins(labels: Any, probs: Any, n_bins: int = 10) -> dict[str, list[float]]:
    """The reliability (calibration) diagram's points: the examples sorted by predicted
    probability and cut into ``n_bins`` groups of equal size (quantile bins: they resolve the
    low probabilities of click data, where equal-width bins would put everything in one); for
    each non-empty group its ``mean_predicted``, ``observed_rate`` (mean label), ``count`` and
    ``bin_lower`` (its lowest prediction). A calibrated model has ``observed_rate ==
    mean_predicted`` in every bin.

    >>> reliability_bins([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.2], n_bins=2)["observed_rate"]
    [0.0, 1.0]
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = _pair(labels, probs, "probs")
    check_probs(p)
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, n_bins) if len(g)]
    return {
        "bin_lower": [float(p[g[0]]) for g in groups],
        "mean_predicted": [float(p[g].mean()) for g in groups],
        "observed_rate": [float(y[g].mean()) for g in groups],
        "count": [float(len(g)) for g in groups],
    }


def metrics_of_checked(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> dict[str, float | int]:
    """:func:`binary_metrics` on arrays that were already validated (used by the accumulators)."""
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("no examples to compute metrics on")
    rate = float(y.mean())
    one_class = rate in (0.0, 1.0)
    ll = _logloss_checked(y, p, eps)
    return {
        "auc": math.nan if one_class else _auc_checked(y, p),
        "logloss": ll,
        "ne": math.nan if one_class else ll / _entropy(rate),
        "calibration": math.nan if rate == 0.0 else float(p.mean()) / rate,
        "count": n,
        "positive_rate": rate,
    }


def binary_metrics(labels: Any, probs: Any, eps: float = 1e-7) -> dict[str, float | int]:
    """All binary metrics at once: ``{"auc", "logloss", "ne", "calibration", "count",
    "positive_rate"}``.

    Unlike the single functions, a set with only one class does not raise: ``auc`` and ``ne``
    (and ``calibration`` when there is no positive) are ``nan`` so that evaluation of a rare
    task on tiny data still returns the other numbers.

    Example:
        >>> m = binary_metrics([0, 1, 1, 0], [0.2, 0.7, 0.6, 0.1])
        >>> m["auc"], m["count"]
        (1.0, 4)
    """
    y, p = _pair(labels, probs, "probs")
    check_probs(p)
    return metrics_of_checked(y, p, eps)
