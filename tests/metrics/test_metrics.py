"""Tests of recsys.metrics against scikit-learn and hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from recsys.metrics import (
    METRIC_NAMES,
    BinaryMetricAccumulator,
    MultiTaskAccumulator,
    auc,
    binary_metrics,
    calibration,
    logloss,
    normalized_entropy,
)


def _random_case(seed: int, n: int, rate: float = 0.2, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < rate).astype(np.float32)
    probs = np.clip(0.3 * labels + rng.random(n) * 0.7, 0.01, 0.99)
    if decimals is not None:
        probs = np.round(probs, decimals)
    return labels, probs


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_auc_matches_sklearn_including_heavy_ties(seed: int, decimals: int | None) -> None:
    labels, probs = _random_case(seed, 2000, decimals=decimals)
    assert auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)


def test_auc_small_hand_cases() -> None:
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0
    assert auc([1, 0], [0.1, 0.9]) == 0.0
    # Scores need not be probabilities (logits work).
    assert auc([0, 1, 1], [-3.0, 2.0, 10.0]) == 1.0


def test_inputs_as_torch_tensors_and_column_vectors() -> None:
    labels, probs = _random_case(7, 500)
    expected = roc_auc_score(labels, probs)
    assert auc(torch.tensor(labels)[:, None], torch.tensor(probs)[:, None]) == pytest.approx(
        expected, abs=1e-12
    )
    assert auc(labels.astype(bool), probs.astype(np.float32)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_logloss_matches_sklearn(seed: int) -> None:
    labels, probs = _random_case(seed, 3000)
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-10)


def test_logloss_clips_extreme_probabilities() -> None:
    value = logloss([1, 0], [0.0, 1.0], eps=1e-7)
    assert math.isfinite(value)
    assert value == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_normalized_entropy_by_hand() -> None:
    labels = np.array([1, 0, 0, 0])
    probs = np.array([0.5, 0.25, 0.25, 0.25])
    ll = -(math.log(0.5) + 3 * math.log(0.75)) / 4
    base = 0.25
    h = -(base * math.log(base) + (1 - base) * math.log(1 - base))
    assert normalized_entropy(labels, probs) == pytest.approx(ll / h, rel=1e-12)
    # Predicting the base rate everywhere scores exactly 1.
    assert normalized_entropy(labels, np.full(4, base)) == pytest.approx(1.0, rel=1e-12)


def test_calibration() -> None:
    assert calibration([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(2.0)
    assert calibration([1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(1.0)


def test_binary_metrics_keys_and_values() -> None:
    labels, probs = _random_case(3, 1000)
    m = binary_metrics(labels, probs)
    assert tuple(m) == METRIC_NAMES
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert m["logloss"] == pytest.approx(log_loss(labels, probs), rel=1e-10)
    assert m["ne"] == pytest.approx(normalized_entropy(labels, probs))
    assert m["calibration"] == pytest.approx(probs.mean() / labels.mean())
    assert m["count"] == 1000
    assert m["positive_rate"] == pytest.approx(labels.mean())


def test_binary_metrics_single_class_gives_nan_not_error() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["auc"]) and math.isnan(m["ne"]) and math.isnan(m["calibration"])
    assert m["count"] == 3 and m["positive_rate"] == 0.0 and math.isfinite(m["logloss"])


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only one class"),
        ([0, 0], [0.1, 0.2], "only one class"),
        ([0, 1, 1], [0.1, 0.2], "same length"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, float("nan")], [0.1, 0.2], "NaN"),
        ([0, 2], [0.1, 0.2], "0 or 1"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "shape"),
        ([], [], "empty"),
    ],
)
def test_auc_errors(labels, scores, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        auc(labels, scores)


def test_other_errors() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logloss([0, 1], [0.1, 1.5])
    with pytest.raises(ValueError, match="only one class"):
        normalized_entropy([1, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="no positive"):
        calibration([0, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="same length"):
        binary_metrics([0, 1], [0.5])


@pytest.mark.parametrize("seed", range(4))
def test_streaming_equals_batch_on_random_splits(seed: int) -> None:
    labels, probs = _random_case(seed, 5000, decimals=2)
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.choice(np.arange(1, 5000), size=rng.integers(1, 30), replace=False))
    acc = BinaryMetricAccumulator()
    for i, (y, p) in enumerate(zip(np.split(labels, cuts), np.split(probs, cuts))):
        if i % 2:  # mix tensors and B x 1 arrays
            acc.update(torch.from_numpy(y), torch.from_numpy(p)[:, None])
        else:
            acc.update(y[:, None], p)
    assert acc.count == 5000
    assert acc.compute() == binary_metrics(labels, probs)


def test_accumulator_merge_reset_and_errors() -> None:
    labels, probs = _random_case(11, 3000)
    a, b = BinaryMetricAccumulator(), BinaryMetricAccumulator()
    a.update(labels[:1000], probs[:1000])
    b.update(labels[1000:], probs[1000:])
    assert a.merge(b).compute() == binary_metrics(labels, probs)
    assert b.count == 2000  # merge leaves the other accumulator unchanged
    with pytest.raises(ValueError, match="NaN"):
        a.update([0.0], [float("nan")])
    assert a.count == 3000  # a bad batch stores nothing
    a.reset()
    assert a.count == 0
    with pytest.raises(ValueError, match="before any update"):
        a.compute()


def test_multitask_accumulator() -> None:
    tasks = ["like", "comment", "share"]
    rng = np.random.default_rng(5)
    n = 4000
    labels = (rng.random((n, 3)) < [0.1, 0.03, 0.5]).astype(np.float32)
    probs = np.clip(0.4 * labels + 0.6 * rng.random((n, 3)), 0.0, 1.0)
    acc = MultiTaskAccumulator(tasks)
    for start in range(0, n, 700):
        acc.update(
            torch.tensor(labels[start : start + 700]), torch.tensor(probs[start : start + 700])
        )
    result = acc.compute()
    assert list(result) == tasks
    for j, t in enumerate(tasks):
        assert result[t] == binary_metrics(labels[:, j], probs[:, j])
    expected_mean = np.mean([roc_auc_score(labels[:, j], probs[:, j]) for j in range(3)])
    assert acc.mean("auc") == pytest.approx(expected_mean, abs=1e-12)

    other = MultiTaskAccumulator(tasks)
    other.update(labels[:10], probs[:10])
    acc.merge(other)
    assert acc.compute()["like"]["count"] == n + 10
    with pytest.raises(ValueError, match="different tasks"):
        acc.merge(MultiTaskAccumulator(["like"]))
    acc.reset()
    with pytest.raises(ValueError):
        acc.compute()


def test_multitask_mean_skips_undefined_tasks_and_validates_shapes() -> None:
    acc = MultiTaskAccumulator(["like", "share"])
    acc.update([[1, 0], [0, 0]], [[0.9, 0.1], [0.2, 0.3]])
    assert math.isnan(acc.compute()["share"]["auc"])
    assert acc.mean("auc") == 1.0
    with pytest.raises(ValueError, match="B x 2"):
        acc.update(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="task 'share'"):
        acc.update([[1, 0]], [[0.5, float("nan")]])
    assert acc.tasks["like"].count == 2  # the bad batch stored nothing for any task
    single = MultiTaskAccumulator(["ctr"])
    single.update(np.array([0, 1]), np.array([0.3, 0.7]))
    assert single.compute()["ctr"]["auc"] == 1.0
    with pytest.raises(ValueError, match="unique"):
        MultiTaskAccumulator(["a", "a"])
