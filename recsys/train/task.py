"""The small interface between the training loop and what it trains.

:class:`~recsys.train.trainer.Trainer` owns the loop (optimizers, learning-rate schedule,
evaluation cadence, early stopping, checkpoints with exact resume, MLflow logging, progress);
a :class:`Task` owns what differs between rankers and retrieval: how one batch becomes a loss,
how a split is evaluated, and any state of its own that a resumed run must get back (the
two-tower's frequency estimator and negative sampler). Batches come from a
:class:`BatchSource`, which can restart in the middle of an epoch.

The tasks: :class:`recsys.train.tasks.ranking.RankingTask` (BCE per label) and
:class:`recsys.train.tasks.retrieval.RetrievalTask` (sampled softmax or BCE over in-batch and
uniform negatives).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["BatchSource", "Task", "TrainBatch"]


class TrainBatch(Protocol):
    """A batch the loop can count and move: :class:`recsys.types.Batch` or
    :class:`recsys.data.tables.RetrievalBatch`."""

    def __len__(self) -> int: ...

    def to(self, device: torch.device, non_blocking: bool = False) -> Any: ...


class BatchSource(Protocol):
    """What the loop needs from training data (``ParquetBatchLoader``, ``PairBatches``)."""

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def iter_from(self, batch_index: int) -> Iterator[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


@runtime_checkable
class Task(Protocol):
    """What one kind of model is trained on and judged by.

    Attributes:
        kind: ``ranking`` or ``retrieval`` (checkpoints record it).
        default_metric: the validation metric early stopping watches unless configured
            (``auc``, ``recall@10``); ``default_mode``: ``max`` or ``min``.
    """

    kind: str
    default_metric: str
    default_mode: str

    def to(self, device: torch.device) -> None:
        """Moves the task's own tensors (catalog, estimators) to ``device``."""

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar loss of one training batch (the loop calls backward on it)."""

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        """Metrics of ``model`` on ``split`` (``valid`` or ``test``); must not change the model,
        the global RNGs or the task's training state."""

    def has_split(self, split: str) -> bool:
        """Whether ``split`` can be evaluated (a ranker run may have no validation data)."""

    def state_dict(self) -> dict[str, Any]:
        """The task's training state (checkpointed beside the model)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def stats(self, model: nn.Module) -> dict[str, Any]:
        """Facts about training to add to the run's ``train`` metrics."""
