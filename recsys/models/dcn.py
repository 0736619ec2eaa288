"""DCN-v2 (Wang et al., WWW 2021): explicit (low-rank) cross layers plus a deep MLP.

Parts:

* ``embeddings``: passed in; tables may have different dims.
* ``cross``: :class:`~recsys.modules.interaction.CrossNetwork` over
  ``x0 = [dense, e_1, ..., e_F]`` (width ``I = D + sum(dims)``).
* ``deep``: :class:`~recsys.modules.mlp.MLP`; after the cross network (``"stacked"``) or beside
  it on ``x0`` (``"parallel"``, outputs concatenated).
* ``head``: ``Linear(-> T)`` logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.inputs import check_dense, ranker_tables
from recsys.modules.embedding import pooled_width
from recsys.modules.interaction import CrossNetwork
from recsys.modules.mlp import MLP
from recsys.types import FeatureSpec

__all__ = ["DCNv2"]

_STRUCTURES = ("stacked", "parallel")


class DCNv2(nn.Module):
    """Deep & cross network v2.

    Args:
        feature_spec: dense, sparse and label names; ``T = feature_spec.num_tasks``.
        embeddings: collection with one table per sparse feature (any dims).
        cross_layers: number of cross layers (0 = none, a plain MLP ablation).
        low_rank: rank ``r`` of ``W = U V^T``; ``None`` = full rank.
        structure: ``"stacked"`` (cross -> deep -> head) or ``"parallel"``
            (``[cross(x0), deep(x0)] -> head``).
        deep_mlp: deep MLP sizes (may be empty for ``"stacked"``: cross -> head).
        dropout: dropout after each deep layer.

    Shapes: ``forward(dense: B x D, sparse: KJT) -> B x T`` logits.
    """

    def __init__(
        self,
        feature_spec: FeatureSpec,
        embeddings: nn.Module,
        cross_layers: int = 3,
        low_rank: int | None = 64,
        structure: str = "stacked",
        deep_mlp: Sequence[int] = (256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        configs = ranker_tables(feature_spec, embeddings, model="DCNv2")
        if structure not in _STRUCTURES:
            raise ValueError(f"DCNv2 structure must be one of {_STRUCTURES}, got {structure!r}")
        deep_mlp = list(deep_mlp)
        if structure == "parallel" and not deep_mlp:
            raise ValueError("DCNv2 structure='parallel' needs a non-empty deep_mlp")
        in_features = feature_spec.num_dense + pooled_width(configs)
        self.feature_spec = feature_spec
        self.task_names: tuple[str, ...] = tuple(feature_spec.labels)
        self.num_dense = feature_spec.num_dense
        self.structure = structure
        self.embeddings = embeddings
        self.cross = CrossNetwork(in_features, cross_layers, low_rank)
        self.deep = MLP(in_features, deep_mlp, dropout=dropout) if deep_mlp else nn.Identity()
        deep_out = deep_mlp[-1] if deep_mlp else in_features
        head_in = deep_out if structure == "stacked" else deep_out + in_features
        self.head = nn.Linear(head_in, feature_spec.num_tasks)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``B x D`` float32, ``sparse``: KJT of the spec's features -> ``B x T``."""
        return self.from_pooled(dense, self.embeddings(sparse).values())

    def from_pooled(self, dense: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Everything after the embedding lookup: ``dense`` ``B x D`` and the pooled embeddings
        ``B x sum(dims)`` in :func:`~recsys.modules.embedding.embedding_layout` order ->
        ``B x T`` logits."""
        if self.num_dense > 0:
            check_dense(dense, self.num_dense, model="DCNv2")
            x0 = torch.cat([dense, values], dim=1)
        else:
            x0 = values
        if self.structure == "stacked":
            return self.head(self.deep(self.cross(x0)))
        return self.head(torch.cat([self.cross(x0), self.deep(x0)], dim=1))
