"""Tests of recsys.retrieval.sampling: frequency estimation, log-Q, accidental hits, losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from recsys.retrieval.sampling import (
    StreamingFrequencyEstimator,
    accidental_hit_mask,
    logq_correct,
    mixed_log_q,
    pointwise_bce_loss,
    sample_uniform_negatives,
    sampled_softmax_loss,
)


# -- frequency estimation ------------------------------------------------------------------------
def test_estimator_converges_to_true_frequencies() -> None:
    """A stationary stream with Zipf item probabilities: the estimate of occurrences per batch
    matches ``batch_size * p`` for frequent items (several per batch) and rarer ones alike."""
    num_items, batch, steps = 40, 64, 3000
    p = 1.0 / torch.arange(1, num_items + 1, dtype=torch.float64)
    p = p / p.sum()  # top item ~0.23 -> ~15 occurrences per batch; item 20 ~0.012 -> ~0.75
    gen = torch.Generator().manual_seed(0)
    est = StreamingFrequencyEstimator(num_items, alpha=0.01)
    for _ in range(steps):
        est.update(torch.multinomial(p, batch, replacement=True, generator=gen))
    assert est.step == steps
    expected = (batch * p).float()
    got = est.probabilities(torch.arange(num_items))
    rel = (got - expected).abs() / expected
    assert rel[:20].max() < 0.15, rel[:20]
    assert rel.median() < 0.1, rel
    # log q is the log of the same estimate
    torch.testing.assert_close(est.log_q(torch.arange(num_items)), got.log())


def test_estimator_exact_updates_and_duplicates() -> None:
    """Bias-corrected EMA of gaps; k occurrences in one step spread the gap evenly."""
    est = StreamingFrequencyEstimator(10, alpha=0.5)
    est.update(torch.tensor([3]))  # t=0, first sight: gap 1 -> S=0.5, W=0.5 -> G=1
    assert est.probabilities(torch.tensor([3])).item() == pytest.approx(1.0)
    est.update(torch.tensor([], dtype=torch.long))  # t=1
    est.update(torch.tensor([], dtype=torch.long))  # t=2
    est.update(torch.tensor([3]))  # t=3: gap 3 -> S=0.25+1.5=1.75, W=0.75 -> G=7/3
    assert est.probabilities(torch.tensor([3])).item() == pytest.approx(3.0 / 7.0)
    # t=4: item 3 twice: gap 1 over 2 occurrences (0.5 each), keep=(1-a)^2=0.25
    est.update(torch.tensor([3, 3, 5]))
    s, w = 0.25 * 1.75 + 0.75 * 0.5, 0.25 * 0.75 + 0.75
    assert est.probabilities(torch.tensor([3])).item() == pytest.approx(w / s, rel=1e-6)
    # item 5 first seen at t=4: gap 5
    assert est.probabilities(torch.tensor([5])).item() == pytest.approx(0.2)
    # never seen: gap = steps so far + 1 = 6
    assert est.log_q(torch.tensor([7])).item() == pytest.approx(-math.log(6.0))
    # a 2-d id tensor keeps its shape
    assert est.log_q(torch.tensor([[3, 5], [7, 7]])).shape == (2, 2)


def test_estimator_duplicates_in_one_batch_give_counts_above_one() -> None:
    est = StreamingFrequencyEstimator(4, alpha=0.05)
    for _ in range(400):
        est.update(torch.tensor([0, 0, 0, 0, 1, 1, 2]))  # 4, 2, 1 per step; item 3 never
    got = est.probabilities(torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(got[:3], torch.tensor([4.0, 2.0, 1.0]), rtol=1e-4, atol=0)
    assert got[3].item() == pytest.approx(1.0 / 401.0)


def test_estimator_state_dict_roundtrip_and_validation() -> None:
    est = StreamingFrequencyEstimator(5)
    est.update(torch.tensor([0, 1, 1]))
    est.update(torch.tensor([4]))
    other = StreamingFrequencyEstimator(5)
    other.load_state_dict(est.state_dict())
    ids = torch.arange(5)
    torch.testing.assert_close(other.log_q(ids), est.log_q(ids))
    assert other.step == 2
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        est.update(torch.tensor([5]))
    with pytest.raises(TypeError, match="integer"):
        est.update(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="alpha"):
        StreamingFrequencyEstimator(5, alpha=0.0)
    with pytest.raises(ValueError, match="5 items"):
        StreamingFrequencyEstimator(6).load_state_dict(est.state_dict())


# -- log-Q ---------------------------------------------------------------------------------------
def test_logq_correct_subtracts_log_q_per_column() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    log_q = torch.tensor([0.5, -1.0, 2.0])
    out = logq_correct(logits, log_q)
    expected = torch.tensor([[0.5, 3.0, 1.0], [-0.5, 0.0, -1.5]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="B x N"):
        logq_correct(logits, torch.zeros(2))


def test_mixed_log_q_adds_uniform_expected_counts() -> None:
    log_q = torch.log(torch.tensor([2.0, 0.5, 0.01]))
    out = mixed_log_q(log_q, num_uniform=50, num_items=1000)
    torch.testing.assert_close(out, torch.log(torch.tensor([2.05, 0.55, 0.06])))
    assert mixed_log_q(log_q, 0, 1000) is log_q


# -- accidental hits -----------------------------------------------------------------------------
def test_accidental_hit_mask_on_duplicates() -> None:
    pos = torch.tensor([5, 7, 5, 9])
    cand = torch.tensor([5, 7, 5, 9, 5, 1])  # in-batch positives, then 2 negatives
    mask = accidental_hit_mask(pos, cand)
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[0, [2, 4]] = True  # item 5 again at column 2 (row 2's positive) and negative 4
    expected[2, [0, 4]] = True
    assert torch.equal(mask, expected)
    assert not mask.diagonal().any()
    # explicit positive columns
    mask = accidental_hit_mask(torch.tensor([1, 2]), torch.tensor([2, 1, 1]), torch.tensor([2, 0]))
    assert mask.tolist() == [[False, True, False], [False, False, False]]


# -- uniform negatives ---------------------------------------------------------------------------
def test_sample_uniform_negatives_range_and_reproducibility() -> None:
    a = sample_uniform_negatives(37, 5000, generator=torch.Generator().manual_seed(1))
    b = sample_uniform_negatives(37, 5000, generator=torch.Generator().manual_seed(1))
    assert a.dtype == torch.long and a.shape == (5000,)
    assert torch.equal(a, b)
    assert int(a.min()) == 0 and int(a.max()) == 36
    counts = torch.bincount(a, minlength=37).float()
    assert counts.min() > 0.5 * 5000 / 37  # roughly uniform
    assert sample_uniform_negatives(10, 0).shape == (0,)


# -- losses --------------------------------------------------------------------------------------
def _tiny() -> tuple[torch.Tensor, torch.Tensor]:
    user = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # B=2, D=2
    items = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])  # N=3: 2 positives + 1 negative
    return user, items


def test_sampled_softmax_loss_matches_hand_computed_cross_entropy() -> None:
    user, items = _tiny()
    tau = 0.5
    log_q = torch.tensor([0.1, -0.2, 0.3])
    pos = torch.tensor([0, 1])
    # row 0: dots [0.8, 0, 1] / 0.5 = [1.6, 0, 2] - log_q = [1.5, 0.2, 1.7]
    # row 1: dots [0.96, 0.8, 0.6] / 0.5 = [1.92, 1.6, 1.2] - log_q = [1.82, 1.8, 0.9]
    row0 = -(1.5 - math.log(math.exp(1.5) + math.exp(0.2) + math.exp(1.7)))
    row1 = -(1.8 - math.log(math.exp(1.82) + math.exp(1.8) + math.exp(0.9)))
    loss = sampled_softmax_loss(user, items, pos, tau, log_q)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # without log-Q
    row0 = -(1.6 - math.log(math.exp(1.6) + 1.0 + math.exp(2.0)))
    row1 = -(1.6 - math.log(math.exp(1.92) + math.exp(1.6) + math.exp(1.2)))
    loss = sampled_softmax_loss(user, items, pos, torch.tensor(tau))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_sampled_softmax_loss_masks_hits_to_minus_inf() -> None:
    user, items = _tiny()
    pos = torch.tensor([0, 1])
    mask = torch.tensor([[False, False, True], [True, True, False]])  # (1, 1) is the positive
    loss = sampled_softmax_loss(user, items, pos, 0.5, None, mask)
    # row 0 over columns {0, 1}: logits [1.6, 0]; row 1 over {1, 2}: [1.6, 1.2]
    row0 = -(1.6 - math.log(math.exp(1.6) + 1.0))
    row1 = -(1.6 - math.log(math.exp(1.6) + math.exp(1.2)))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # gradients stay finite with -inf entries
    user = user.clone().requires_grad_(True)
    sampled_softmax_loss(user, items, pos, 0.5, None, mask).backward()
    assert torch.isfinite(user.grad).all()
    # a duplicate of the positive does not count as a negative: equal to dropping the column
    dup_items = torch.cat([items, items[:1]])  # column 3 = item 10 again, row 0's positive
    cand = torch.tensor([10, 11, 12, 10])
    one = torch.tensor([0])
    hits = accidental_hit_mask(torch.tensor([10]), cand, pos_index=one)
    assert hits.tolist() == [[False, False, False, True]]
    a = sampled_softmax_loss(user[:1], dup_items, one, 0.5, None, hits)
    b = sampled_softmax_loss(user[:1], items, one, 0.5)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_sampled_softmax_loss_equals_full_cross_entropy() -> None:
    torch.manual_seed(0)
    user = F.normalize(torch.randn(6, 4), dim=-1)
    items = F.normalize(torch.randn(9, 4), dim=-1)
    pos = torch.tensor([0, 3, 8, 2, 2, 5])
    expected = F.cross_entropy(user @ items.t() / 0.07, pos)
    assert sampled_softmax_loss(user, items, pos, 0.07).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="hit_mask"):
        sampled_softmax_loss(user, items, pos, 0.07, None, torch.zeros(6, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="item_emb"):
        sampled_softmax_loss(user, items[:, :3], pos, 0.07)


def test_pointwise_bce_loss_hand_computed() -> None:
    user, items = _tiny()
    pos = torch.tensor([0, 1])
    # logits = dots / 0.5 = [[1.6, 0.0, 2.0], [1.92, 1.6, 1.2]]

    def bce(x: float, y: float) -> float:
        return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 / (1 + math.exp(x))))

    pos_part = (bce(1.6, 1) + bce(1.6, 1)) / 2
    neg_part = (bce(0.0, 0) + bce(2.0, 0) + bce(1.92, 0) + bce(1.2, 0)) / 4
    loss = pointwise_bce_loss(user, items, pos, 0.5)
    assert loss.item() == pytest.approx(pos_part + neg_part, rel=1e-6)
    mask = torch.tensor([[False, False, True], [False, False, False]])
    neg_part = (bce(0.0, 0) + bce(1.92, 0) + bce(1.2, 0)) / 3
    loss = pointwise_bce_loss(user, items, pos, 0.5, mask)
    assert loss.item() == pytest.approx(pos_part + neg_part, rel=1e-6)
