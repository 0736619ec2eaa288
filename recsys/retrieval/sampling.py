"""Negative sampling and the losses of two-tower retrieval training.

Pure tensor functions (no loops over rows) plus one small stateful object:

* :class:`StreamingFrequencyEstimator`: how often each item shows up in a training batch,
  estimated online from the stream of positives (Yi et al., 2019, "Sampling-bias-corrected
  neural modeling for large corpus item recommendations").
* :func:`logq_correct` / :func:`mixed_log_q`: the log-Q correction of a sampled softmax.
* :func:`accidental_hit_mask`: candidates that are the row's own positive under another column.
* :func:`sample_uniform_negatives`: extra negatives for mixed negative sampling (Yang et al.,
  2020, "Mixed negative sampling for learning two-tower neural networks").
* :func:`sampled_softmax_loss` and :func:`pointwise_bce_loss`.

Shapes: ``B`` users (rows) in a batch, ``N`` candidate items (columns), ``D`` the embedding
dim. The candidate set of in-batch training is the ``B`` positives of the batch, optionally
followed by ``n`` uniformly sampled items, so ``N = B + n`` and row ``i``'s positive is column
``pos_index[i]`` (``i`` for in-batch positives).

Example::

    est = StreamingFrequencyEstimator(num_items=1000)
    est.update(pos_ids)                                  # B
    neg = sample_uniform_negatives(1000, 64, generator=g)
    cand = torch.cat([pos_ids, neg])                     # N = B + 64
    log_q = mixed_log_q(est.log_q(cand), 64, 1000)       # N
    hits = accidental_hit_mask(pos_ids, cand)            # B x N
    loss = sampled_softmax_loss(u, v, torch.arange(B), 0.05, log_q, hits)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

__all__ = [
    "StreamingFrequencyEstimator",
    "accidental_hit_mask",
    "logq_correct",
    "mixed_log_q",
    "pointwise_bce_loss",
    "sample_uniform_negatives",
    "sampled_softmax_loss",
]


class StreamingFrequencyEstimator:
    """Online estimate of how often each item appears in a training batch.

    The streaming frequency estimation of Yi et al. (2019): for each item ``j`` keep the step
    ``A[j]`` at which it was last seen and an exponential moving average ``G[j]`` of the gap
    (in steps) between consecutive occurrences. The estimated number of occurrences of ``j``
    per step is ``m_j = 1 / G[j]`` (per example: ``m_j / batch_size``). Memory is three
    ``num_items`` vectors; an update touches only the items of the batch (``O(B)``).

    One update is one step ``t`` (0, 1, 2, ...). For an item that occurs ``k`` times in the
    batch, the gap since its last occurrence, ``g = t - A[j]``, is spread evenly over its ``k``
    occurrences (``k`` observations of ``g / k``), which keeps the average gap per occurrence
    equal to ``steps / occurrences`` and so lets ``m_j`` exceed 1 for items that appear several
    times per batch. The average is bias-corrected as in Adam (``G = S / W`` with
    ``S <- (1 - a)^k S + (1 - (1 - a)^k) g / k`` and ``W <- (1 - a)^k W + 1 - (1 - a)^k``, both
    starting at 0), so early observations weigh like later ones instead of the first one
    lingering. The first occurrence counts the gap from the start, ``g = t + 1`` (as if the item
    had last occurred just before step 0; for a stationary stream the time to the first
    occurrence has the law of a gap). An item never seen gets ``G[j] = t + 1`` (at most one
    occurrence so far) in :meth:`log_q`.

    Why a gap average rather than counts: counts with decay need either a sweep over every item
    per step or a per-item timestamp anyway; the gap form adapts to drifting popularity with
    one parameter ``alpha`` (the EMA rate, roughly ``1 / alpha`` occurrences of memory) and
    needs no global normalizer. Constant factors do not matter for the log-Q correction of a
    softmax (a constant added to every logit of a row cancels), so ``m_j`` need not sum to
    ``B`` exactly.

    Args:
        num_items: item ids are in ``[0, num_items)``.
        alpha: EMA rate in ``(0, 1]``; smaller is smoother and slower to adapt.
        device: where the state lives (ids passed in must be on the same device).
    """

    def __init__(
        self, num_items: int, alpha: float = 0.01, device: torch.device | str | None = None
    ) -> None:
        if not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.num_items = num_items
        self.alpha = float(alpha)
        self.step = 0
        self.last_step = torch.full((num_items,), -1, dtype=torch.long, device=device)
        self.gap_sum = torch.zeros(num_items, dtype=torch.float64, device=device)  # S
        self.weight = torch.zeros(num_items, dtype=torch.float64, device=device)  # W

    @property
    def device(self) -> torch.device:
        return self.gap_sum.device

    def to(self, device: torch.device | str) -> StreamingFrequencyEstimator:
        """Moves the state to ``device`` (in place); returns ``self``."""
        self.last_step = self.last_step.to(device)
        self.gap_sum = self.gap_sum.to(device)
        self.weight = self.weight.to(device)
        return self

    def _check_ids(self, item_ids: torch.Tensor) -> torch.Tensor:
        if item_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"item ids must be an integer tensor, got {item_ids.dtype}")
        ids = item_ids.reshape(-1).to(device=self.device, dtype=torch.long)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_items):
            raise ValueError(
                f"item ids must be in [0, {self.num_items}), got range "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        return ids

    @torch.no_grad()
    def update(self, item_ids: torch.Tensor) -> None:
        """Records one step in which ``item_ids`` (``B``, duplicates allowed) occurred."""
        ids = self._check_ids(item_ids)
        t = self.step
        self.step += 1
        if ids.numel() == 0:
            return
        uniq, counts = torch.unique(ids, return_counts=True)
        k = counts.to(torch.float64)
        gap = (t - self.last_step[uniq]).to(torch.float64)  # first sight: t + 1
        keep = (1.0 - self.alpha) ** k
        self.gap_sum[uniq] = keep * self.gap_sum[uniq] + (1.0 - keep) * gap / k
        self.weight[uniq] = keep * self.weight[uniq] + (1.0 - keep)
        self.last_step[uniq] = t

    @torch.no_grad()
    def probabilities(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Estimated occurrences per step of each id: ``item_ids`` ``(...)`` -> float32 ``(...)``.

        Divide by the batch size for the probability that one example's positive is the item.
        """
        return self.log_q(item_ids).exp()

    @torch.no_grad()
    def log_q(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``log m_j`` for each id: ``item_ids`` ``(...)`` -> float32 ``(...)`` (``-log G[j]``)."""
        ids = self._check_ids(item_ids)
        weight = self.weight[ids]
        seen = weight > 0
        gap = torch.where(
            seen, self.gap_sum[ids] / torch.where(seen, weight, 1.0), float(self.step + 1)
        )
        gap = gap.clamp_min(1e-12)
        return (-gap.log()).to(torch.float32).reshape(item_ids.shape)

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_items": self.num_items,
            "alpha": self.alpha,
            "step": self.step,
            "last_step": self.last_step.clone(),
            "gap_sum": self.gap_sum.clone(),
            "weight": self.weight.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_items"]) != self.num_items:
            raise ValueError(
                f"state is for {state['num_items']} items, the estimator has {self.num_items}"
            )
        self.alpha = float(state["alpha"])
        self.step = int(state["step"])
        device = self.device
        self.last_step = state["last_step"].to(device)
        self.gap_sum = state["gap_sum"].to(device)
        self.weight = state["weight"].to(device)


def logq_correct(logits: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Log-Q correction: ``logits`` ``B x N`` minus ``log_q`` ``N`` (per column) -> ``B x N``.

    With candidates drawn with (expected) counts ``q_j``, softmax over ``s_ij - log q_j``
    estimates the full softmax over all items without the popularity bias of the sample.
    """
    if logits.dim() != 2 or log_q.dim() != 1 or log_q.shape[0] != logits.shape[1]:
        raise ValueError(
            f"logq_correct expects logits B x N and log_q N, got {tuple(logits.shape)} "
            f"and {tuple(log_q.shape)}"
        )
    return logits - log_q.to(logits.dtype).unsqueeze(0)


def mixed_log_q(log_q_in_batch: torch.Tensor, num_uniform: int, num_items: int) -> torch.Tensor:
    """Log expected count of each candidate under mixed negative sampling.

    The candidate multiset is the batch's positives (item ``j`` with expected count ``m_j``,
    ``exp(log_q_in_batch)``) plus ``num_uniform`` uniform draws (expected count
    ``num_uniform / num_items`` for every item), so ``q_j = m_j + num_uniform / num_items``.
    ``log_q_in_batch``: ``N`` -> ``N``. With ``num_uniform == 0`` it is returned unchanged.
    """
    if num_uniform < 0:
        raise ValueError(f"num_uniform must be >= 0, got {num_uniform}")
    if num_uniform == 0:
        return log_q_in_batch
    uniform = math.log(num_uniform / num_items)
    return torch.logaddexp(log_q_in_batch, torch.full_like(log_q_in_batch, uniform))


def accidental_hit_mask(
    pos_ids: torch.Tensor, cand_ids: torch.Tensor, pos_index: torch.Tensor | None = None
) -> torch.Tensor:
    """Where a candidate is the row's own positive item at another column.

    Args:
        pos_ids: ``B`` item id of each row's positive.
        cand_ids: ``N`` item id of each candidate column.
        pos_index: ``B`` column of each row's true positive (default ``0..B-1``, the diagonal
            of in-batch training).

    Returns:
        ``B x N`` bool: ``cand_ids[j] == pos_ids[i]`` and ``j != pos_index[i]``. Masked logits
        are set to ``-inf`` so a duplicate of the positive does not count as a negative.
    """
    if pos_ids.dim() != 1 or cand_ids.dim() != 1:
        raise ValueError(
            f"accidental_hit_mask expects pos_ids B and cand_ids N, got "
            f"{tuple(pos_ids.shape)} and {tuple(cand_ids.shape)}"
        )
    b = pos_ids.shape[0]
    if pos_index is None:
        if cand_ids.shape[0] < b:
            raise ValueError("without pos_index the first B candidates must be the positives")
        pos_index = torch.arange(b, device=pos_ids.device)
    same = pos_ids.unsqueeze(1) == cand_ids.unsqueeze(0)  # B x N
    true_col = F.one_hot(pos_index, cand_ids.shape[0]).bool()
    return same & ~true_col


def sample_uniform_negatives(
    num_items: int,
    n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` item ids drawn uniformly with replacement from ``[0, num_items)``: ``LongTensor[n]``.

    ``generator`` must live on ``device`` (default: the generator's device, else CPU).
    """
    if num_items < 1 or n < 0:
        raise ValueError(f"need num_items >= 1 and n >= 0, got {num_items} and {n}")
    if device is None and generator is not None:
        device = generator.device
    return torch.randint(0, num_items, (n,), generator=generator, device=device)


def _similarity(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    pos_index: torch.Tensor,
    temperature: float | torch.Tensor,
) -> torch.Tensor:
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(
            f"expected user_emb B x D and item_emb N x D, got {tuple(user_emb.shape)} and "
            f"{tuple(item_emb.shape)}"
        )
    if pos_index.shape != (user_emb.shape[0],):
        raise ValueError(f"pos_index must be B = {user_emb.shape[0]}, got {tuple(pos_index.shape)}")
    return user_emb @ item_emb.t() / temperature  # B x N


def _clear_positive(hit_mask: torch.Tensor, pos_index: torch.Tensor) -> torch.Tensor:
    """``hit_mask`` with each row's true column forced to False (never mask the positive)."""
    return hit_mask & ~F.one_hot(pos_index, hit_mask.shape[1]).bool()


def sampled_softmax_loss(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    pos_index: torch.Tensor,
    temperature: float | torch.Tensor,
    log_q: torch.Tensor | None = None,
    hit_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of each row's positive against all candidates.

    ``logits = user_emb @ item_emb.T / temperature`` (``B x N``), minus ``log_q`` per column
    when given (:func:`logq_correct`), with ``hit_mask`` entries set to ``-inf``; the loss is
    ``mean_i -log softmax(logits_i)[pos_index[i]]``.

    Args:
        user_emb: ``B x D``.
        item_emb: ``N x D``: the in-batch positives first, then any extra negatives.
        pos_index: ``B`` long, the column of each row's positive.
        temperature: positive float or 0-dim tensor (a learnable one gets gradients).
        log_q: ``N`` log sampling (expected-count) of each candidate, or ``None``.
        hit_mask: ``B x N`` bool from :func:`accidental_hit_mask`, or ``None``. The true
            column is never masked, whatever the mask says.

    Returns:
        A 0-dim tensor.
    """
    logits = _similarity(user_emb, item_emb, pos_index, temperature)
    if log_q is not None:
        logits = logq_correct(logits, log_q)
    if hit_mask is not None:
        if hit_mask.shape != logits.shape:
            raise ValueError(f"hit_mask must be {tuple(logits.shape)}, got {tuple(hit_mask.shape)}")
        logits = logits.masked_fill(_clear_positive(hit_mask, pos_index), float("-inf"))
    return F.cross_entropy(logits, pos_index)


def pointwise_bce_loss(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    pos_index: torch.Tensor,
    temperature: float | torch.Tensor,
    hit_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pointwise logistic loss: the positive pair is label 1, every other candidate label 0.

    ``logits = user_emb @ item_emb.T / temperature`` (``B x N``); the loss is the mean BCE over
    the ``B`` positive pairs plus the mean BCE over the negative pairs (the ``B x N`` entries
    that are neither the true column nor masked by ``hit_mask``), so positives and negatives
    weigh the same whatever ``N``. No log-Q correction: each pair is scored on its own.

    Shapes as in :func:`sampled_softmax_loss`; returns a 0-dim tensor.
    """
    logits = _similarity(user_emb, item_emb, pos_index, temperature)
    positive = F.one_hot(pos_index, logits.shape[1]).bool()
    negative = ~positive
    if hit_mask is not None:
        if hit_mask.shape != logits.shape:
            raise ValueError(f"hit_mask must be {tuple(logits.shape)}, got {tuple(hit_mask.shape)}")
        negative = negative & ~hit_mask
    pos_loss = F.binary_cross_entropy_with_logits(
        logits[positive], torch.ones_like(logits[positive])
    )
    neg_logits = logits[negative]
    if neg_logits.numel() == 0:
        return pos_loss
    neg_loss = F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits))
    return pos_loss + neg_loss
