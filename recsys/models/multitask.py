"""Multi-task ranker: shared embeddings, MMoE or PLE experts, one tower per task.

Parts:

* ``embeddings``: passed in, shared by all tasks.
* ``dense_mlp``: optional MLP over the dense features (skipped when ``D == 0``).
* ``experts``: :class:`~recsys.modules.experts.MMoE` or :class:`~recsys.modules.experts.PLE`
  over ``x = [dense or dense_mlp(dense), e_1, ..., e_F]``.
* ``towers``: per task ``MLP(H, tower_mlp)`` then ``Linear(-> 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.inputs import check_dense, ranker_tables
from recsys.modules.embedding import pooled_width
from recsys.modules.experts import PLE, MMoE
from recsys.modules.mlp import MLP
from recsys.types import FeatureSpec

__all__ = ["MultiTaskRanker"]

_EXPERTS = ("mmoe", "ple")


class MultiTaskRanker(nn.Module):
    """Multi-task ranking model (works for ``T == 1`` too).

    Args:
        feature_spec: dense, sparse and label names; ``T = feature_spec.num_tasks``.
        embeddings: collection with one table per sparse feature (any dims).
        experts: ``"mmoe"`` or ``"ple"``.
        num_experts: MMoE experts ``E``.
        expert_mlp: expert sizes (non-empty); ``H = expert_mlp[-1]``.
        tower_mlp: hidden sizes of each task tower (may be empty); a 1-output Linear follows.
        num_shared_experts: PLE shared experts per level ``S``.
        num_task_experts: PLE experts per task per level ``K``.
        ple_levels: PLE levels.
        dense_mlp: optional MLP sizes applied to the dense features first (ignored when
            ``D == 0``, so one model config serves data sets with and without dense features).
        dropout: dropout in experts and towers.

    Shapes: ``forward(dense: B x D, sparse: KJT) -> B x T`` logits (column ``t`` is
    ``task_names[t]``).
    """

    def __init__(
        self,
        feature_spec: FeatureSpec,
        embeddings: nn.Module,
        experts: str = "mmoe",
        num_experts: int = 4,
        expert_mlp: Sequence[int] = (128, 64),
        tower_mlp: Sequence[int] = (32,),
        num_shared_experts: int = 2,
        num_task_experts: int = 1,
        ple_levels: int = 1,
        dense_mlp: Sequence[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        configs = ranker_tables(feature_spec, embeddings, model="MultiTaskRanker")
        if experts not in _EXPERTS:
            raise ValueError(f"MultiTaskRanker experts must be one of {_EXPERTS}, got {experts!r}")
        num_tasks = feature_spec.num_tasks
        if num_tasks < 1:
            raise ValueError("MultiTaskRanker needs at least one label")
        num_dense = feature_spec.num_dense
        self.feature_spec = feature_spec
        self.task_names: tuple[str, ...] = tuple(feature_spec.labels)
        self.num_dense = num_dense
        self.embeddings = embeddings
        self.dense_mlp = (
            MLP(num_dense, dense_mlp, dropout=dropout) if dense_mlp and num_dense > 0 else None
        )
        dense_out = self.dense_mlp.out_features if self.dense_mlp is not None else num_dense
        in_features = dense_out + pooled_width(configs)
        self.experts: MMoE | PLE
        if experts == "mmoe":
            self.experts = MMoE(in_features, num_tasks, num_experts, expert_mlp, dropout=dropout)
        else:
            self.experts = PLE(
                in_features,
                num_tasks,
                ple_levels,
                num_shared_experts,
                num_task_experts,
                expert_mlp,
                dropout=dropout,
            )
        width = self.experts.out_features
        self.towers = nn.ModuleList(
            nn.Sequential(
                MLP(width, tower_mlp, dropout=dropout) if tower_mlp else nn.Identity(),
                nn.Linear(list(tower_mlp)[-1] if tower_mlp else width, 1),
            )
            for _ in range(num_tasks)
        )

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``B x D`` float32, ``sparse``: KJT of the spec's features -> ``B x T``."""
        return self.from_pooled(dense, self.embeddings(sparse).values())

    def from_pooled(self, dense: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Everything after the embedding lookup: ``dense`` ``B x D`` and the pooled embeddings
        ``B x sum(dims)`` in :func:`~recsys.modules.embedding.embedding_layout` order ->
        ``B x T`` logits."""
        if self.num_dense > 0:
            check_dense(dense, self.num_dense, model="MultiTaskRanker")
            d = self.dense_mlp(dense) if self.dense_mlp is not None else dense
            x = torch.cat([d, values], dim=1)
        else:
            x = values
        per_task = self.experts(x)  # B x T x H
        return torch.cat([tower(per_task[:, t]) for t, tower in enumerate(self.towers)], dim=1)
