"""The modules that are exported: a trained model with its embedding lookups made explicit.

TorchRec's collections take a ``KeyedJaggedTensor``; ONNX models take plain tensors. Rather
than tracing the collection (its ``Loop``/sequence ops are slow in ONNX Runtime, a
``KeyedJaggedTensor`` argument bakes its lengths into the graph, and the fused kernels do not
trace at all), the exported graph holds each table's trained weight and pools by itself:

* input ``<f>.ids`` (``n_f`` int64, every row's ids concatenated) and ``<f>.lengths``
  (``B`` int32) per sparse feature;
* the segment of each id is ``cumsum`` over marks placed at each row's first position
  (``index_add``, so rows with no id, also trailing ones, are handled exactly);
* ``pooled = zeros(B, d).index_add(0, segment, weight[ids])``, divided by
  ``max(length, 1)`` for mean-pooled tables: sum and mean pooling as in TorchRec, an empty
  bag pools to zeros, and the missing (0) and out-of-vocabulary (1) rows are ordinary rows.

The same lookup serves every embedding kind (TorchRec ``EmbeddingBagCollection``, fbgemm's
fused collection, our native kernel): the weights are read from the collection's state dict
(``embedding_bags.<table>.weight``). The model's own layers run unchanged on the pooled
values through its ``from_pooled`` method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchrec import EmbeddingBagConfig, PoolingType

__all__ = ["ExportedRanker", "ExportedTower", "PooledLookup", "SparseInput"]


@dataclass(frozen=True)
class SparseInput:
    """One sparse input of an exported graph: the feature and its table's size."""

    feature: str
    cardinality: int


def _configs(embeddings: nn.Module) -> list[EmbeddingBagConfig]:
    return list(embeddings.embedding_bag_configs())  # type: ignore[operator]


class PooledLookup(nn.Module):
    """Pooled embeddings of several features from plain id tensors.

    Args:
        embeddings: a trained embedding-bag collection (any kind).
        features: the input features in the order of :meth:`forward`'s arguments (each must
            feed a table of ``embeddings``).

    Shapes: ``forward(ids: list of n_f int64, lengths: list of B int) -> B x sum(dims)``,
    columns in the collection's output order (``embedding_layout``), as ``values()`` of the
    collection's ``KeyedTensor``.
    """

    def __init__(self, embeddings: nn.Module, features: list[str]) -> None:
        super().__init__()
        state = embeddings.state_dict()
        position = {f: i for i, f in enumerate(features)}
        self.slots: list[tuple[int, int, bool]] = []  # (input index, weight index, mean)
        weights = []
        for table in _configs(embeddings):
            key = f"embedding_bags.{table.name}.weight"
            if key not in state:
                raise ValueError(f"the embedding collection has no weight {key!r} to export")
            weight = state[key].detach().to("cpu", torch.float32).clone()
            if weight.shape != (table.num_embeddings, table.embedding_dim):
                raise ValueError(
                    f"{key} has shape {tuple(weight.shape)}, the table config says "
                    f"{(table.num_embeddings, table.embedding_dim)}"
                )
            weights.append(weight)
            for feature in table.feature_names:
                if feature not in position:
                    raise ValueError(f"feature {feature!r} of table {table.name} is not an input")
                mean = table.pooling == PoolingType.MEAN
                self.slots.append((position[feature], len(weights) - 1, mean))
        for i, weight in enumerate(weights):
            self.register_buffer(f"weight_{i}", weight)
        self.num_weights = len(weights)

    def weight(self, i: int) -> torch.Tensor:
        return getattr(self, f"weight_{i}")

    def forward(self, ids: list[torch.Tensor], lengths: list[torch.Tensor]) -> torch.Tensor:
        """See the class docstring."""
        parts = []
        for feature, w, mean in self.slots:
            parts.append(_pool(self.weight(w), ids[feature], lengths[feature], mean))
        return torch.cat(parts, dim=1)


def _pool(
    weight: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor, mean: bool
) -> torch.Tensor:
    """``B x d`` sums (or means) of ``weight[ids]`` per row; ``lengths`` (``B``) split ``ids``."""
    lengths = lengths.to(torch.int64)
    n = ids.shape[0]
    ends = torch.cumsum(lengths, 0)
    starts = ends[:-1]  # first position of rows 1..B-1 (== n for trailing empty rows)
    marks = torch.zeros(n + 1, dtype=torch.int64).index_add(0, starts, torch.ones_like(starts))
    segment = torch.cumsum(marks, 0)[:n]
    pooled = torch.zeros(lengths.shape[0], weight.shape[1], dtype=weight.dtype)
    pooled = pooled.index_add(0, segment, weight[ids])
    if mean:
        pooled = pooled / lengths.clamp(min=1).to(weight.dtype).unsqueeze(1)
    return pooled


class ExportedRanker(nn.Module):
    """A ranker as exported: ``(dense?, ids_1, lengths_1, ..., ids_F, lengths_F)`` -> one
    ``B`` probability per task.

    Args:
        model: a trained ranker (``embeddings`` collection + ``from_pooled(dense, values)``).
        features: the sparse features in input order (the feature spec's order).
        num_dense: ``D``; when 0 there is no ``dense`` input.

    Shapes: ``dense`` ``B x D`` float32, ``ids_f`` ``n_f`` int64, ``lengths_f`` ``B`` int32 ->
    ``T`` tensors of ``B`` float32 probabilities (``sigmoid`` of the model's logits).
    """

    def __init__(self, model: nn.Module, features: list[str], num_dense: int) -> None:
        super().__init__()
        if not features and not num_dense:
            raise ValueError("a ranker without dense and sparse features has nothing to export")
        self.model = model
        # a linear model over dense features only has no tables (model.embeddings is None)
        self.lookup = PooledLookup(model.embeddings, features) if features else None  # type: ignore[arg-type]
        self.num_dense = num_dense
        self.num_features = len(features)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """See the class docstring."""
        dense, sparse = (inputs[0], inputs[1:]) if self.num_dense else (None, inputs)
        ids, lengths = list(sparse[0::2]), list(sparse[1::2])
        pooled = self.lookup(ids, lengths) if self.lookup is not None else None
        if dense is None:
            assert pooled is not None
            dense = torch.zeros(pooled.shape[0], 0, dtype=pooled.dtype)
        probs = torch.sigmoid(self.model.from_pooled(dense, pooled))  # type: ignore[operator]
        return tuple(probs[:, t] for t in range(probs.shape[1]))


class ExportedTower(nn.Module):
    """One two-tower side as exported: ``(ids_1, lengths_1, ...)`` -> ``B x D`` unit vectors.

    Args:
        tower: a trained :class:`~recsys.models.two_tower.Tower` without dense inputs.
        features: its sparse features in input order.
    """

    def __init__(self, tower: nn.Module, features: list[str]) -> None:
        super().__init__()
        if getattr(tower, "dense_dim", 0):
            raise ValueError("towers with dense inputs are not exported (none are built today)")
        self.tower = tower
        self.lookup = PooledLookup(tower.embeddings, features)  # type: ignore[arg-type]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """See the class docstring."""
        pooled = self.lookup(list(inputs[0::2]), list(inputs[1::2]))
        return self.tower.from_pooled(None, pooled)  # type: ignore[operator]
