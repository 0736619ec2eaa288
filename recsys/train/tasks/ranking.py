"""Rankers as a task of the training loop: binary cross-entropy per label.

The model maps ``(dense B x D, sparse KJT of B rows)`` to logits ``B x T`` (one per label, in
the order of ``labels``); the loss is the mean BCE of each label, weighted by ``loss_weights``
(1 by default) and summed. Evaluation streams a split's loader through
:func:`recsys.train.evaluation.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from recsys.train.evaluation import Gather, evaluate
from recsys.train.task import BatchSource
from recsys.types import Batch

__all__ = ["RankingTask"]

LoaderFactory = Callable[[], BatchSource]


class RankingTask:
    """BCE per label over :class:`~recsys.types.Batch` es.

    Args:
        labels: label names, in the order of the model's outputs.
        eval_loaders: ``{split: loader or a function making one}`` of the splits that can be
            evaluated (``valid``, ``test``).
        loss_weights: ``{label: weight}``; unnamed labels weigh 1.
        device: where evaluation runs (the model's device).
        gather: in a data-parallel run, exchanges each process's predictions so evaluation
            covers the whole split (:func:`recsys.train.evaluation.evaluate`).
    """

    kind = "ranking"
    default_metric = "auc"
    default_mode = "max"

    def __init__(
        self,
        labels: Sequence[str],
        *,
        eval_loaders: Mapping[str, BatchSource | LoaderFactory] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        device: torch.device | None = None,
        gather: Gather | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.gather = gather
        weights = dict(loss_weights or {})
        unknown = set(weights) - set(self.labels)
        if unknown:
            raise ValueError(
                f"trainer.loss_weights names unknown tasks {sorted(unknown)}; tasks: {self.labels}"
            )
        self.loss_weights = torch.tensor([float(weights.get(t, 1.0)) for t in self.labels])
        self._loaders = dict(eval_loaders or {})
        self.device = device

    def to(self, device: torch.device) -> None:
        self.device = device
        self.loss_weights = self.loss_weights.to(device)

    def training_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """``sum_t w_t * mean_b BCE(logit[b, t], label[b, t])``."""
        logits = model(batch.dense, batch.sparse).float()
        if logits.shape != batch.labels.shape:
            raise ValueError(
                f"model output {tuple(logits.shape)} does not match labels "
                f"{tuple(batch.labels.shape)}"
            )
        per_task = nn.functional.binary_cross_entropy_with_logits(
            logits, batch.labels, reduction="none"
        ).mean(0)
        return (per_task * self.loss_weights).sum()

    def has_split(self, split: str) -> bool:
        return split in self._loaders

    def loader(self, split: str) -> BatchSource:
        if split not in self._loaders:
            raise ValueError(f"no {split} loader; splits: {sorted(self._loaders)}")
        loader = self._loaders[split]
        if callable(loader) and not hasattr(loader, "iter_from"):
            loader = self._loaders[split] = loader()  # made once, on first use
        return loader

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        return evaluate(
            model, self.loader(split), self.labels, device=self.device, gather=self.gather
        )

    def evaluate_with_reliability(
        self, model: nn.Module, split: str, n_bins: int = 10
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`evaluate` in the same pass as the reliability diagram's bins per task:
        ``(metrics, {task: bins})``."""
        out = evaluate(
            model,
            self.loader(split),
            self.labels,
            device=self.device,
            reliability_bins=n_bins,
            gather=self.gather,
        )
        return out, out.pop("reliability")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def stats(self, model: nn.Module) -> dict[str, Any]:
        return {}
