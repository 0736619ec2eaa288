"""The one registry of sparse (embedding) optimizers, and the optimizer factory type.

Embeddings that are fused into FBGEMM's or our native table-batched kernel carry their own
optimizer (its settings come from the same ``sparse_optimizer`` node); plain tables get one of
these torch optimizers. ``rowwise_adagrad`` on a plain table is torch's (element-wise) Adagrad.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["SPARSE_OPTIMIZERS", "OptimizerFactory", "sparse_optimizer_factory"]

OptimizerFactory = Callable[[Sequence[nn.Parameter] | Sequence[dict]], torch.optim.Optimizer]

SPARSE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rowwise_adagrad": torch.optim.Adagrad,  # plain tables: torch Adagrad (fused: the kernel's)
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def sparse_optimizer_factory(settings: Mapping[str, Any]) -> OptimizerFactory:
    """A factory for the plain-table optimizer ``settings["type"]`` (default
    ``rowwise_adagrad``) with the other keys as keyword arguments.

    Raises:
        ValueError: an unknown type (the message lists the known ones), or keyword arguments
            the optimizer does not take (raised when the factory is first called).
    """
    kwargs = dict(settings)
    kind = kwargs.pop("type", "rowwise_adagrad")
    if kind not in SPARSE_OPTIMIZERS:
        raise ValueError(
            f"sparse_optimizer.type {kind!r} is unknown; choose from {sorted(SPARSE_OPTIMIZERS)}"
        )
    cls = SPARSE_OPTIMIZERS[kind]

    def make(params: Sequence[nn.Parameter] | Sequence[dict]) -> torch.optim.Optimizer:
        try:
            return cls(params, **kwargs)
        except TypeError as e:
            raise ValueError(f"bad key under 'sparse_optimizer': {e}") from None

    return make
