"""Multi-layer perceptron used by every model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP"]

#: Activation names accepted by :class:`MLP`.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """Stack of ``Linear -> activation -> dropout`` layers.

    Args:
        in_features: input width ``I``.
        sizes: output width of each layer; empty = identity (``out_features == I``).
        activation: a key of :data:`ACTIVATIONS`.
        dropout: dropout probability after each activation (0 disables).
        final_activation: if ``False`` the last layer is a bare ``Linear`` (no activation,
            no dropout), e.g. for a head producing logits.

    Shapes: ``forward(x: ... x I) -> ... x sizes[-1]``.

    Example::

        mlp = MLP(13, [512, 256, 64])
        mlp(torch.randn(8, 13)).shape  # torch.Size([8, 64])
    """

    def __init__(
        self,
        in_features: int,
        sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        final_activation: bool = True,
    ) -> None:
        super().__init__()
        sizes = list(sizes)
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"MLP in_features must be a positive int, got {in_features!r}")
        bad = [s for s in sizes if not isinstance(s, int) or s < 1]
        if bad:
            raise ValueError(f"MLP sizes must be positive ints, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for i, size in enumerate(sizes):
            layers.append(nn.Linear(width, size))
            if final_activation or i < len(sizes) - 1:
                layers.append(ACTIVATIONS[activation]())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
            width = size
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``... x I`` -> ``... x out_features``."""
        return self.layers(x)
