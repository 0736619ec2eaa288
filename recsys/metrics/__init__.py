"""recsys.metrics: pure metric functions on arrays and streaming accumulators.

Imports nothing from the rest of ``recsys`` and never imports torch (tensors are converted).
"""

from recsys.metrics.binary import (
    METRIC_NAMES,
    auc,
    binary_metrics,
    calibration,
    logloss,
    normalized_entropy,
)
from recsys.metrics.streaming import BinaryMetricAccumulator, MultiTaskAccumulator

__all__ = [
    "METRIC_NAMES",
    "BinaryMetricAccumulator",
    "MultiTaskAccumulator",
    "auc",
    "binary_metrics",
    "calibration",
    "logloss",
    "normalized_entropy",
]
