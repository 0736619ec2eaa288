"""DLRM (Naumov et al., 2019): bottom MLP, pairwise dot interaction, top MLP.

Parts:

* ``embeddings``: passed in (plain or fused TorchRec collection), one ``d``-dim vector per
  sparse feature.
* ``bottom_mlp``: ``D -> ... -> d`` over the dense features (absent when ``D == 0``).
* ``interaction``: dot products of all pairs among ``[dense_emb, e_1, ..., e_F]``.
* ``top_mlp`` + ``head``: ``[dense_emb, dots] -> ... -> T`` logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.inputs import check_dense, ranker_tables
from recsys.modules.embedding import embedding_layout
from recsys.modules.interaction import DotInteraction
from recsys.modules.mlp import MLP
from recsys.types import FeatureSpec

__all__ = ["DLRM"]


class DLRM(nn.Module):
    """Deep learning recommendation model.

    Args:
        feature_spec: dense, sparse and label names; ``T = feature_spec.num_tasks``.
        embeddings: collection with one table per sparse feature, all of the same dim ``d``.
        bottom_mlp: dense MLP sizes; the last size must equal ``d`` (ignored when ``D == 0``).
        top_mlp: hidden sizes of the top MLP; a ``Linear(top_mlp[-1], T)`` head follows.
        interaction_self: also include ``<v_i, v_i>`` terms.
        dropout: dropout after each top MLP hidden layer.

    Shapes: ``forward(dense: B x D, sparse: KJT) -> B x T`` logits. With ``N = F + 1`` vectors
    (``F`` without dense features) the top MLP reads ``d + N(N-1)/2`` features
    (``N(N+1)/2`` with self interaction; no ``d`` term when ``D == 0``).

    Raises:
        ValueError: tables missing or with a dim different from ``bottom_mlp[-1]`` (or from
            each other when ``D == 0``), empty ``bottom_mlp`` with dense features, nothing to
            interact (one sparse feature, no dense, no self interaction), bad sizes.
    """

    def __init__(
        self,
        feature_spec: FeatureSpec,
        embeddings: nn.Module,
        bottom_mlp: Sequence[int] = (64, 16),
        top_mlp: Sequence[int] = (64, 32),
        interaction_self: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        configs = ranker_tables(feature_spec, embeddings, model="DLRM")
        num_dense = feature_spec.num_dense
        bottom_mlp, top_mlp = list(bottom_mlp), list(top_mlp)
        if num_dense > 0:
            if not bottom_mlp:
                raise ValueError(
                    "DLRM with dense features needs a non-empty bottom_mlp "
                    "(its last size is the embedding dim)"
                )
            dim = bottom_mlp[-1]
            source = f"bottom_mlp[-1] = {dim}"
        else:
            dim = configs[0].embedding_dim
            source = f"table {configs[0].name}'s dim {dim} (no dense features)"
        wrong = [f"{t.name} (dim {t.embedding_dim})" for t in configs if t.embedding_dim != dim]
        if wrong:
            raise ValueError(
                f"DLRM needs every embedding table's dim to equal {source}; "
                f"tables that differ: {', '.join(wrong)}"
            )

        self.feature_spec = feature_spec
        self.task_names: tuple[str, ...] = tuple(feature_spec.labels)
        self.num_dense = num_dense
        self.embedding_dim = dim
        self.embeddings = embeddings
        self.bottom_mlp = MLP(num_dense, bottom_mlp) if num_dense > 0 else None
        self.num_embeddings = len(embedding_layout(embeddings))  # F (one per feature)
        num_vectors = self.num_embeddings + (1 if num_dense > 0 else 0)
        self.interaction = DotInteraction(num_vectors, self_interaction=interaction_self)
        top_in = self.interaction.out_features + (dim if num_dense > 0 else 0)
        if top_in == 0:
            raise ValueError(
                "DLRM has nothing to interact: one sparse feature and no dense features; "
                "set interaction_self=True or add features"
            )
        self.top_mlp = MLP(top_in, top_mlp, dropout=dropout) if top_mlp else nn.Identity()
        self.head = nn.Linear(top_mlp[-1] if top_mlp else top_in, feature_spec.num_tasks)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``B x D`` float32, ``sparse``: KJT of the spec's features -> ``B x T``."""
        return self.from_pooled(dense, self.embeddings(sparse).values())

    def from_pooled(self, dense: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Everything after the embedding lookup: ``dense`` ``B x D`` and the pooled embeddings
        ``B x (F * d)`` in :func:`~recsys.modules.embedding.embedding_layout` order ->
        ``B x T`` logits (the exported graph computes the pooling itself, then calls this)."""
        emb = values.reshape(values.shape[0], self.num_embeddings, self.embedding_dim)  # B x F x d
        if self.bottom_mlp is None:
            top = self.interaction(emb)
        else:
            check_dense(dense, self.num_dense, model="DLRM")
            x = self.bottom_mlp(dense)  # B x d
            vectors = torch.cat([x.unsqueeze(1), emb], dim=1)  # B x (F + 1) x d
            top = torch.cat([x, self.interaction(vectors)], dim=1)
        return self.head(self.top_mlp(top))
