"""Feature interactions: DLRM's pairwise dot products and DCN-v2's (low-rank) cross network."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CrossLayer", "CrossNetwork", "DotInteraction"]


class DotInteraction(nn.Module):
    """Pairwise dot products of ``F`` vectors (the upper triangle of ``X X^T``).

    Args:
        num_features: ``F``, the number of vectors per example.
        self_interaction: also keep the diagonal (``<x_i, x_i>``).

    Shapes: ``forward(x: B x F x d) -> B x P`` with ``P = F(F-1)/2`` (``F(F+1)/2`` with self
    interaction), ordered row-major over pairs ``(i, j)``, ``i < j`` (``i <= j``).

    One batched matmul computes ``B x F x F``; a precomputed flat index buffer gathers the
    upper triangle.
    """

    def __init__(self, num_features: int, self_interaction: bool = False) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"DotInteraction needs num_features >= 1, got {num_features}")
        rows, cols = torch.triu_indices(num_features, num_features, 0 if self_interaction else 1)
        self.register_buffer("flat_index", rows * num_features + cols, persistent=False)
        self.num_features = num_features
        self.self_interaction = self_interaction
        self.out_features = int(rows.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x F x d`` -> ``B x P``."""
        if x.dim() != 3 or x.shape[1] != self.num_features:
            raise ValueError(
                f"DotInteraction expects B x {self.num_features} x d, got {tuple(x.shape)}"
            )
        z = torch.bmm(x, x.transpose(1, 2))  # B x F x F
        return z.flatten(1).index_select(1, self.flat_index)


class CrossLayer(nn.Module):
    """One DCN-v2 cross layer: ``x_{l+1} = x0 * (W x_l + b) + x_l``.

    With ``low_rank = r`` the weight is factorized as ``W = U V^T`` (``U, V: I x r``), so the
    layer costs ``2 I r`` instead of ``I^2`` multiply-adds.

    Attributes (low rank): ``v`` = ``Linear(I, r, bias=False)`` (weight ``V^T``), ``u`` =
    ``Linear(r, I)`` (weight ``U``, bias ``b``). Full rank: ``w`` = ``Linear(I, I)``.

    Shapes: ``forward(x0: B x I, xl: B x I) -> B x I``.
    """

    def __init__(self, in_features: int, low_rank: int | None = None) -> None:
        super().__init__()
        if low_rank is not None and (not isinstance(low_rank, int) or low_rank < 1):
            raise ValueError(f"low_rank must be None or a positive int, got {low_rank!r}")
        self.low_rank = low_rank
        if low_rank is None:
            self.w = nn.Linear(in_features, in_features)
            nn.init.xavier_normal_(self.w.weight)
            nn.init.zeros_(self.w.bias)
        else:
            self.v = nn.Linear(in_features, low_rank, bias=False)
            self.u = nn.Linear(low_rank, in_features)
            nn.init.xavier_normal_(self.v.weight)
            nn.init.xavier_normal_(self.u.weight)
            nn.init.zeros_(self.u.bias)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        """``x0``, ``xl``: ``B x I`` -> ``B x I``."""
        h = self.w(xl) if self.low_rank is None else self.u(self.v(xl))
        return torch.addcmul(xl, x0, h)


class CrossNetwork(nn.Module):
    """``num_layers`` stacked :class:`CrossLayer` s, all fed the same ``x0``.

    Shapes: ``forward(x0: B x I) -> B x I``. ``num_layers = 0`` is the identity.
    """

    def __init__(self, in_features: int, num_layers: int, low_rank: int | None = None) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be an int >= 0, got {num_layers!r}")
        self.layers = nn.ModuleList(CrossLayer(in_features, low_rank) for _ in range(num_layers))
        self.out_features = in_features

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``x0``: ``B x I`` -> ``B x I``."""
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x
