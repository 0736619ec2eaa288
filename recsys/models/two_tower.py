"""Two-tower retrieval model: a user tower and an item tower scored by cosine similarity.

Parts (all named, embeddings passed in):

* ``user_embeddings``: a TorchRec embedding-bag collection (plain or fused) over the user-side
  sparse features, e.g. ``user`` (one id) and ``history`` (a multi-hot bag of recently engaged
  item ids, pooled by mean; an empty bag pools to zeros).
* ``item_embeddings``: the same over item-side features, e.g. ``item``, ``author``, ``topic``.
* ``user_mlp`` / ``item_mlp``: ``[dense, pooled embeddings] -> hidden -> output_dim``; the
  outputs are L2-normalized, so a score is a cosine similarity.
* ``temperature``: the softmax temperature ``tau`` of the training loss (scores are divided by
  it); fixed, or learned as ``exp(log_tau)`` clamped to ``[min_temperature, max_temperature]``.

The history bag has its own table rather than sharing the item tower's item-id table: TorchRec
collections own their tables, and one table in two collections would need a shared parameter
that fused (TBE) kernels and sharding planners do not support. Keeping them apart also lets the
history table use another dim or pooling.

Example::

    user_ebc = build_embeddings(user_tables, fused=False)   # features: user, history
    item_ebc = build_embeddings(item_tables, fused=False)   # features: item, topic
    model = TwoTower(user_ebc, item_ebc, user_dense_dim=1, item_dense_dim=0,
                     user_mlp=[128], item_mlp=[128], output_dim=64)
    u, v = model(user_dense, user_kjt, item_dense, item_kjt)  # B x 64, N x 64
    scores = u @ v.T / model.temperature                      # B x N

:func:`build_two_tower` makes one from a :class:`~recsys.data.retrieval_data.RetrievalData`'s
features (:class:`TwoTowerSettings` + an embedding config); :func:`encode_items` and
:func:`encode_users` turn a whole feature table into vectors in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.retrieval_data import RetrievalData
from recsys.data.tables import FeatureTable
from recsys.modules.embedding import (
    EmbeddingConfig,
    build_embeddings,
    embedding_layout,
    embedding_tables,
)
from recsys.modules.mlp import MLP
from recsys.types import FeatureSpec, SparseFeature

__all__ = [
    "Tower",
    "TwoTower",
    "TwoTowerSettings",
    "build_two_tower",
    "encode_items",
    "encode_users",
]


class Tower(nn.Module):
    """One tower: ``[dense, pooled embeddings] -> MLP -> Linear(output_dim) -> L2 normalize``.

    Args:
        embeddings: embedding-bag collection; its output width ``E`` is the sum of table dims.
        dense_dim: number of dense input features ``Dd`` (0 for none).
        hidden: hidden layer sizes (ReLU after each); empty for a linear projection.
        output_dim: ``D``.
        dropout: dropout after each hidden layer.
        name: used in error messages (``user`` or ``item``).

    Shapes: ``forward(dense: B x Dd, sparse: KJT) -> B x D`` with unit L2 norm per row.
    """

    def __init__(
        self,
        embeddings: nn.Module,
        dense_dim: int,
        hidden: Sequence[int],
        output_dim: int,
        dropout: float = 0.0,
        name: str = "tower",
    ) -> None:
        super().__init__()
        if not isinstance(dense_dim, int) or dense_dim < 0:
            raise ValueError(f"{name} dense_dim must be an int >= 0, got {dense_dim!r}")
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"output_dim must be a positive int, got {output_dim!r}")
        layout = embedding_layout(embeddings)
        self.name = name
        self.embeddings = embeddings
        self.feature_names = [n for n, _ in layout]
        self.embedding_width = sum(d for _, d in layout)
        self.dense_dim = dense_dim
        in_features = self.embedding_width + dense_dim
        if in_features == 0:
            raise ValueError(f"the {name} tower has no inputs (no tables, no dense features)")
        hidden = list(hidden)
        self.mlp = MLP(in_features, hidden, dropout=dropout) if hidden else nn.Identity()
        self.proj = nn.Linear(hidden[-1] if hidden else in_features, output_dim)
        self.output_dim = output_dim

    def forward(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``B x Dd`` (``None`` if ``Dd == 0``), ``sparse``: KJT -> ``B x D``."""
        pooled = self.embeddings(sparse).values() if self.embedding_width else None  # B x E
        return self.from_pooled(dense, pooled)

    def from_pooled(self, dense: torch.Tensor | None, pooled: torch.Tensor | None) -> torch.Tensor:
        """Everything after the embedding lookup: ``dense`` ``B x Dd`` and the pooled
        embeddings ``B x E`` (``None`` without tables) -> ``B x D`` unit vectors."""
        parts = [pooled] if pooled is not None else []
        if self.dense_dim:
            if dense is None or dense.dim() != 2 or dense.shape[1] != self.dense_dim:
                shape = None if dense is None else tuple(dense.shape)
                raise ValueError(
                    f"{self.name} tower expects dense B x {self.dense_dim}, got {shape}"
                )
            parts.append(dense.to(parts[0].dtype if parts else torch.float32))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return F.normalize(self.proj(self.mlp(x)), dim=-1)


class TwoTower(nn.Module):
    """User and item towers producing unit vectors; the score is ``<u, v> / temperature``.

    Args:
        user_embeddings: collection over the user-side sparse features (user id, the
            ``history`` bag of item ids with mean pooling, other user categoricals).
        item_embeddings: collection over the item-side sparse features (item id, author,
            topic or genres ...).
        user_dense_dim, item_dense_dim: dense feature counts ``Du``, ``Di`` (0 for none).
        user_mlp, item_mlp: hidden sizes of each tower (ReLU after each).
        output_dim: ``D``, the dim of the normalized vectors.
        temperature: initial (or fixed) ``tau > 0``.
        learn_temperature: learn ``log tau`` (a dense parameter) instead of a fixed buffer.
        min_temperature, max_temperature: the clamp of a learned ``tau``.
        dropout: dropout after each hidden layer of both towers.

    Shapes: ``user_vectors(B x Du, KJT) -> B x D``, ``item_vectors(N x Di, KJT) -> N x D``,
    ``forward(...) -> (B x D, N x D)``, ``temperature``: 0-dim tensor.
    """

    def __init__(
        self,
        user_embeddings: nn.Module,
        item_embeddings: nn.Module,
        user_dense_dim: int,
        item_dense_dim: int,
        user_mlp: Sequence[int],
        item_mlp: Sequence[int],
        output_dim: int = 64,
        temperature: float = 0.05,
        learn_temperature: bool = False,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 < min_temperature <= max_temperature:
            raise ValueError(
                f"need 0 < min_temperature <= max_temperature, got {min_temperature} and "
                f"{max_temperature}"
            )
        if not min_temperature <= temperature <= max_temperature:
            raise ValueError(
                f"temperature {temperature} is outside [{min_temperature}, {max_temperature}]"
            )
        self.user_tower = Tower(
            user_embeddings, user_dense_dim, user_mlp, output_dim, dropout, name="user"
        )
        self.item_tower = Tower(
            item_embeddings, item_dense_dim, item_mlp, output_dim, dropout, name="item"
        )
        self.output_dim = output_dim
        self.learn_temperature = learn_temperature
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        log_tau = torch.tensor(math.log(temperature), dtype=torch.float32)
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_temperature", log_tau)

    def no_weight_decay(self) -> list[nn.Parameter]:
        """Parameters the dense optimizer must not decay (a learned temperature)."""
        temp = self.log_temperature
        return [temp] if isinstance(temp, nn.Parameter) else []

    @property
    def temperature(self) -> torch.Tensor:
        """``tau`` as a 0-dim tensor (differentiable when learned, inside the clamp)."""
        return self.log_temperature.exp().clamp(self.min_temperature, self.max_temperature)

    def user_vectors(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``B x Du``, ``sparse``: user-side KJT -> ``B x D``, unit L2 norm."""
        return self.user_tower(dense, sparse)

    def item_vectors(self, dense: torch.Tensor | None, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``dense``: ``N x Di``, ``sparse``: item-side KJT -> ``N x D``, unit L2 norm."""
        return self.item_tower(dense, sparse)

    def forward(
        self,
        user_dense: torch.Tensor | None,
        user_sparse: KeyedJaggedTensor,
        item_dense: torch.Tensor | None,
        item_sparse: KeyedJaggedTensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers: ``(B x D user vectors, N x D item vectors)``."""
        return self.user_vectors(user_dense, user_sparse), self.item_vectors(
            item_dense, item_sparse
        )

    def score(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """Logits ``B x N``: ``user_vecs @ item_vecs.T / temperature``."""
        return user_vecs @ item_vecs.t() / self.temperature


@dataclass
class TwoTowerSettings:
    """The towers of :func:`build_two_tower` (``model.arch`` of ``configs/model/two_tower.yaml``).

    Attributes:
        user_mlp, item_mlp: hidden sizes of the towers.
        output_dim, temperature, learn_temperature, min_temperature, max_temperature, dropout:
            as in :class:`TwoTower`.
    """

    user_mlp: list[int] = field(default_factory=lambda: [128])
    item_mlp: list[int] = field(default_factory=lambda: [128])
    output_dim: int = 64
    temperature: float = 0.05
    learn_temperature: bool = False
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    dropout: float = 0.0


def build_two_tower(
    data: RetrievalData, settings: TwoTowerSettings, embedding: EmbeddingConfig
) -> TwoTower:
    """A :class:`TwoTower` over ``data``'s user- and item-side features (plain tables; multi-
    valued bags such as ``history`` and genres pooled by mean). ``embedding.per_table`` may
    name any of those features."""

    def collection(keys: Sequence[str]) -> nn.Module:
        sparse = tuple(
            SparseFeature(
                k, data.cardinalities[k], multi_hot=k in data.multi_features, pooling="mean"
            )
            for k in keys
        )
        spec = FeatureSpec(dense=(), sparse=sparse, labels=())
        known = {k: v for k, v in embedding.per_table.items() if k in keys}
        config = EmbeddingConfig(embedding.dim, known, embedding.init)
        return build_embeddings(embedding_tables(spec, config), fused=False)

    unknown = set(embedding.per_table) - set(data.user_keys) - set(data.item_keys)
    if unknown:
        raise ValueError(
            f"per_table names unknown features {sorted(unknown)}; the two-tower's features "
            f"are {data.user_keys + data.item_keys}"
        )
    return TwoTower(
        collection(data.user_keys),
        collection(data.item_keys),
        user_dense_dim=0,
        item_dense_dim=0,
        user_mlp=settings.user_mlp,
        item_mlp=settings.item_mlp,
        output_dim=settings.output_dim,
        temperature=settings.temperature,
        learn_temperature=settings.learn_temperature,
        min_temperature=settings.min_temperature,
        max_temperature=settings.max_temperature,
        dropout=settings.dropout,
    )


@torch.no_grad()
def _encode(
    model: nn.Module,
    tower: Callable[[torch.Tensor, KeyedJaggedTensor], torch.Tensor],
    table: FeatureTable,
    batch_size: int,
) -> torch.Tensor:
    """``tower`` over ``table`` in chunks of ``batch_size`` rows, in eval mode: ``R x D``."""
    device = next((p.device for p in model.parameters()), None)
    was_training = model.training
    model.eval()
    try:
        chunks = [torch.empty(0, model.output_dim, device=device)]
        for start in range(0, len(table), batch_size):
            rows = torch.arange(
                start, min(start + batch_size, len(table)), device=table.dense.device
            )
            part = table.take(rows)
            if device is not None:
                part = part.to(device)
            chunks.append(tower(part.dense, part.sparse))
        return torch.cat(chunks)
    finally:
        model.train(was_training)


def encode_items(
    model: TwoTower, catalog: FeatureTable, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Item vectors of the whole catalog in eval mode: ``(ids N, vectors N x D)``.

    ``ids`` is ``0..N-1`` (catalog row = item id); vectors are unit-norm, on the model's device.
    """
    vecs = _encode(model, model.item_vectors, catalog, batch_size)
    return torch.arange(len(catalog), device=vecs.device), vecs


def encode_users(model: TwoTower, users: FeatureTable, batch_size: int = 4096) -> torch.Tensor:
    """User vectors of every row of ``users`` in eval mode: ``R x D``, unit-norm."""
    return _encode(model, model.user_vectors, users, batch_size)
