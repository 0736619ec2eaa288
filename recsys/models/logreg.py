"""Logistic regression: the linear baseline on the same features as the deep models.

``logit_t = sum_f w_f[ids]_t + (W dense)_t + b_t``: each sparse feature's table holds per-id
weights, pooled (sum or mean for multi-hot) by the embedding bag. With ``T`` tasks the tables
are ``T``-dim (one independent linear model per task, sharing nothing but the inputs); so build
the tables with ``EmbeddingConfig(dim=T)``. fbgemm's fused kernels need dims that are multiples
of 4, so for ``T = 1`` use ``fused=False`` embeddings.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.modules.embedding import check_embeddings, embedding_layout
from recsys.types import FeatureSpec

__all__ = ["LogisticRegression"]


class LogisticRegression(nn.Module):
    """Linear model over dense features and per-id weights.

    Args:
        feature_spec: dense, sparse and label names; ``T = feature_spec.num_tasks``.
        embeddings: collection with one ``T``-dim table per sparse feature.

    Shapes: ``forward(dense: B x D, sparse: KJT) -> B x T`` logits.

    Raises:
        ValueError: a table whose dim is not ``T``.
    """

    def __init__(self, feature_spec: FeatureSpec, embeddings: nn.Module) -> None:
        super().__init__()
        configs = check_embeddings(feature_spec, embeddings, model="LogisticRegression")
        num_tasks = feature_spec.num_tasks
        if num_tasks < 1:
            raise ValueError("LogisticRegression needs at least one label")
        wrong = [
            f"{t.name} (dim {t.embedding_dim})" for t in configs if t.embedding_dim != num_tasks
        ]
        if wrong:
            raise ValueError(
                f"LogisticRegression needs embedding dim == number of tasks ({num_tasks}); "
                f"tables that differ: {', '.join(wrong)}. Build them with "
                f"EmbeddingConfig(dim={num_tasks})"
            )
        self.feature_spec = feature_spec
        self.task_names: tuple[str, ...] = tuple(feature_spec.labels)
        self.num_dense = feature_spec.num_dense
        self.num_tasks = num_tasks
        self.num_embeddings = len(embedding_layout(embeddings)) if configs else 0
        self.embeddings = embeddings if configs else None
        self.linear = nn.Linear(self.num_dense, num_tasks, bias=False) if self.num_dense else None
        self.bias = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``B x D`` float32, ``sparse``: KJT of the spec's features -> ``B x T``."""
        values = self.embeddings(sparse).values() if self.embeddings is not None else None
        return self.from_pooled(dense, values)

    def from_pooled(self, dense: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
        """Everything after the embedding lookup: ``dense`` ``B x D`` and the pooled per-id
        weights ``B x (F * T)`` (``None`` without sparse features) -> ``B x T`` logits."""
        logit = self.bias
        if values is not None:
            emb = values.reshape(values.shape[0], self.num_embeddings, self.num_tasks)
            logit = logit + emb.sum(dim=1)
        if self.linear is not None:
            if dense.dim() != 2 or dense.shape[1] != self.num_dense:
                raise ValueError(
                    f"LogisticRegression expects dense B x {self.num_dense}, "
                    f"got {tuple(dense.shape)}"
                )
            logit = logit + self.linear(dense)
        if logit.dim() == 1:  # no features at all: broadcast the bias over the batch
            logit = logit.expand(dense.shape[0], -1)
        return logit
