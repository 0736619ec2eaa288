"""The two-tower (:class:`recsys.models.two_tower.TwoTower`) as a task of the training loop.

Each step scores a batch of ``B`` (user, positive item) pairs against a candidate set made of
the batch's own positives (in-batch negatives), optionally followed by ``n`` items drawn
uniformly from the catalog (mixed negative sampling), ``N = B + n``. Losses
(:class:`RetrievalLossConfig`):

* ``sampled_softmax``: cross-entropy of each row's positive over the ``N`` candidates, with the
  log-Q correction (item frequencies from a
  :class:`~recsys.retrieval.sampling.StreamingFrequencyEstimator` over the positives; with
  uniform negatives, ``q_j = m_j + n / num_items``) and accidental hits (the row's positive
  appearing again among the candidates) masked to ``-inf``;
* ``bce``: pointwise logistic loss, the positive pair against every other candidate.

Evaluation is full-corpus: every catalog item is encoded, each evaluated user's vector (with
the history known at the start of the split) scored against all of them, the user's known items
removed, then Recall/NDCG/HitRate@K and MRR (:mod:`recsys.retrieval.evaluate`).

The estimator, the negative sampler's generator and the count of masked hits are the task's
state: a checkpoint holds them, so a resumed run draws the same negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recsys.data.retrieval_data import RetrievalData
from recsys.data.tables import FeatureTable, RetrievalBatch
from recsys.models.two_tower import TwoTower, encode_items, encode_users
from recsys.retrieval.evaluate import (
    DEFAULT_KS,
    evaluate_topk,
    exact_topk,
    relevant_and_known,
)
from recsys.retrieval.sampling import (
    StreamingFrequencyEstimator,
    accidental_hit_mask,
    mixed_log_q,
    pointwise_bce_loss,
    sample_uniform_negatives,
    sampled_softmax_loss,
)

__all__ = ["LOSSES", "RetrievalLossConfig", "RetrievalTask", "SplitVectors"]

LOSSES = ("sampled_softmax", "bce")


@dataclass
class RetrievalLossConfig:
    """The two-tower's training objective (``retrieval.loss``).

    Attributes:
        kind: ``sampled_softmax`` or ``bce``.
        num_uniform_negatives: extra uniformly sampled negatives per step (shared by all rows).
        logq_correction: subtract ``log q`` of each candidate (sampled softmax only).
        remove_accidental_hits: mask candidates equal to the row's positive.
        frequency_alpha: EMA rate of the streaming frequency estimator.
    """

    kind: str = "sampled_softmax"
    num_uniform_negatives: int = 0
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    frequency_alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise ValueError(f"retrieval.loss.kind must be one of {LOSSES}, got {self.kind!r}")
        if self.num_uniform_negatives < 0:
            raise ValueError(
                f"retrieval.loss.num_uniform_negatives must be >= 0: {self.num_uniform_negatives}"
            )


@dataclass
class SplitVectors:
    """One evaluated split: ``users`` (U indices), their vectors ``U x D``, the catalog's
    ``N x D``, what counts (``relevant``, U rows) and what is removed (``exclude``)."""

    users: np.ndarray
    user_vecs: np.ndarray
    item_vecs: np.ndarray
    relevant: sp.csr_matrix
    exclude: sp.csr_matrix


class RetrievalTask:
    """Sampled-softmax (or BCE) training and full-corpus evaluation of a two-tower.

    Args:
        catalog: row ``j`` = item ``j``'s features (negatives are drawn from it).
        loss: the objective.
        data: the interactions (splits, evaluation histories) the splits are evaluated on;
            ``None``: training only (no split to evaluate, so no early stopping).
        ks: cut-offs of the evaluation metrics (must include 10).
        seed: the negative sampler's generator is seeded ``seed + 1``.
        encode_batch_size: rows per chunk when encoding users and items.
        device: where the catalog, estimator and sampler live (the model's device).
    """

    kind = "retrieval"
    default_metric = "recall@10"
    default_mode = "max"

    def __init__(
        self,
        catalog: FeatureTable,
        loss: RetrievalLossConfig,
        *,
        data: RetrievalData | None = None,
        ks: Sequence[int] = DEFAULT_KS,
        seed: int = 0,
        encode_batch_size: int = 4096,
        device: torch.device | None = None,
    ) -> None:
        self.data = data
        self.items = catalog
        self.loss = loss
        self.ks = tuple(ks)
        self.seed = seed
        self.encode_batch_size = encode_batch_size
        self.num_items = len(catalog)
        self.device = torch.device(device or "cpu")
        self.catalog = self.items.to(self.device)
        self.estimator = StreamingFrequencyEstimator(
            self.num_items, self.loss.frequency_alpha, device=self.device
        )
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.hits = torch.zeros((), dtype=torch.long, device=self.device)

    def to(self, device: torch.device) -> None:
        """Moves the catalog, the estimator and the hit count to ``device``. A generator cannot
        change device: on a new device the sampler restarts from its seed (call this before
        training or loading a checkpoint, as the trainer does)."""
        device = torch.device(device)
        if device == self.device:
            return
        self.device = device
        self.catalog = self.items.to(device)
        self.estimator.to(device)
        self.hits = self.hits.to(device)
        self.generator = torch.Generator(device=device).manual_seed(self.seed + 1)

    # -- training ------------------------------------------------------------------------------
    def training_loss(self, model: nn.Module, batch: RetrievalBatch) -> torch.Tensor:
        """The loss of one batch of ``B`` pairs against ``B + n`` candidates."""
        pos_ids = batch.item_ids.long()
        n = self.num_items
        if pos_ids.numel() and (int(pos_ids.min()) < 0 or int(pos_ids.max()) >= n):
            raise ValueError(f"batch item ids must be catalog rows in [0, {n})")
        user_vecs = model.user_vectors(batch.user_dense, batch.user_sparse)  # B x D
        item_vecs = model.item_vectors(batch.item_dense, batch.item_sparse)  # B x D
        cand_ids = pos_ids
        n_neg = self.loss.num_uniform_negatives
        if n_neg:
            neg_ids = sample_uniform_negatives(n, n_neg, generator=self.generator)
            neg = self.catalog.take(neg_ids)
            item_vecs = torch.cat([item_vecs, model.item_vectors(neg.dense, neg.sparse)])
            cand_ids = torch.cat([pos_ids, neg_ids])  # N = B + n
        pos_index = torch.arange(pos_ids.shape[0], device=pos_ids.device)
        hit_mask = (
            accidental_hit_mask(pos_ids, cand_ids) if self.loss.remove_accidental_hits else None
        )
        if hit_mask is not None:
            self.hits += hit_mask.sum()  # stays on the device: no sync per step
        temperature = model.temperature
        if self.loss.kind == "bce":
            return pointwise_bce_loss(user_vecs, item_vecs, pos_index, temperature, hit_mask)
        log_q = None
        if self.loss.logq_correction:
            self.estimator.update(pos_ids)
            log_q = mixed_log_q(self.estimator.log_q(cand_ids), n_neg, n)
        return sampled_softmax_loss(user_vecs, item_vecs, pos_index, temperature, log_q, hit_mask)

    # -- evaluation ----------------------------------------------------------------------------
    def has_split(self, split: str) -> bool:
        return self.data is not None and split in ("valid", "test")

    def split_vectors(self, model: TwoTower, split: str) -> SplitVectors:
        """The vectors and sets one split is evaluated with."""
        if self.data is None or not self.has_split(split):
            raise ValueError(f"no {split} split to evaluate (valid and test need the data)")
        data = self.data
        users, relevant, exclude = relevant_and_known(data.splits[split], data.known(split))
        _, items = encode_items(model, self.items, self.encode_batch_size)
        user_table = data.user_table(users, split)
        user_vecs = encode_users(model, user_table, self.encode_batch_size)
        return SplitVectors(users, user_vecs.cpu().numpy(), items.cpu().numpy(), relevant, exclude)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        """Full-corpus Recall/NDCG/HitRate@K and MRR of exact search on ``split``."""
        v = self.split_vectors(model, split)
        top = exact_topk(v.user_vecs, v.item_vecs, v.exclude, max(self.ks))
        return evaluate_topk(top, v.relevant, self.ks)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        e = self.estimator
        return {
            "estimator": {
                "step": e.step,
                "last_step": e.last_step.cpu(),
                "gap_sum": e.gap_sum.cpu(),
                "weight": e.weight.cpu(),
            },
            "generator": self.generator.get_state(),
            "hits": int(self.hits),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        e, saved = self.estimator, state["estimator"]
        if saved["weight"].shape != e.weight.shape:
            raise ValueError(
                f"checkpoint estimator has {saved['weight'].shape[0]} items, the catalog "
                f"{e.weight.shape[0]}: not a checkpoint of this run's data"
            )
        e.step = int(saved["step"])
        e.last_step = saved["last_step"].to(self.device)
        e.gap_sum = saved["gap_sum"].to(self.device)
        e.weight = saved["weight"].to(self.device)
        self.generator.set_state(state["generator"])
        self.hits.fill_(int(state["hits"]))

    def stats(self, model: nn.Module) -> dict[str, Any]:
        return {
            "temperature": float(model.temperature.detach()),
            "accidental_hits": int(self.hits),
        }
