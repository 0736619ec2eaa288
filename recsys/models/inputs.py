"""The inputs every ranker checks: spec-covering embedding tables and a ``B x D`` dense tensor.

A ranker is built as ``cls(feature_spec, embeddings, ...)`` and called as
``model(dense, sparse)``; these checks give the same errors, named after the model, in each.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec import EmbeddingBagConfig

from recsys.modules.embedding import check_embeddings
from recsys.types import FeatureSpec

__all__ = ["check_dense", "ranker_tables"]


def ranker_tables(
    spec: FeatureSpec, embeddings: nn.Module, *, model: str
) -> list[EmbeddingBagConfig]:
    """The table configs of ``embeddings``, which must cover exactly the sparse features of
    ``spec`` (:func:`~recsys.modules.embedding.check_embeddings`) and at least one.

    Raises:
        ValueError: missing or extra features, or no sparse feature at all.
    """
    configs = check_embeddings(spec, embeddings, model=model)
    if not configs:
        raise ValueError(f"{model} needs at least one sparse feature")
    return configs


def check_dense(dense: torch.Tensor, num_dense: int, *, model: str) -> None:
    """Raises ``ValueError`` unless ``dense`` is ``B x num_dense``."""
    if dense.dim() != 2 or dense.shape[1] != num_dense:
        raise ValueError(f"{model} expects dense B x {num_dense}, got {tuple(dense.shape)}")
