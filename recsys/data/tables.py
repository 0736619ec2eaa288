"""Row-indexed feature tables of users and items, and the batches of retrieval training.

A :class:`FeatureTable` holds features by row (``dense`` ``R x D`` and a KJT of ``R`` rows); a
*catalog* is a table whose row ``j`` describes item ``j``. :class:`TrainingPairs` are training
events (one user-side row per event and the event's item id; item features are looked up in
the catalog); :class:`PairBatches` cuts them into shuffled :class:`RetrievalBatch` es with the
``len`` / ``set_epoch`` / ``iter_from`` protocol of the training loop, so a resumed run sees
exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

__all__ = [
    "FeatureTable",
    "PairBatches",
    "RetrievalBatch",
    "TrainingPairs",
    "jagged",
    "take_rows",
]


def take_rows(kjt: KeyedJaggedTensor, rows: torch.Tensor) -> KeyedJaggedTensor:
    """The KJT restricted to ``rows`` (``M`` long indices into its ``R`` rows, repeats allowed).

    Every key keeps its bags; the result has ``M`` rows in the order of ``rows``. Vectorized
    over keys and rows (one gather of the values).
    """
    keys = kjt.keys()
    num_rows = kjt.stride()
    lengths = kjt.lengths().reshape(len(keys), num_rows)  # F x R
    flat = lengths.reshape(-1)
    starts = torch.cumsum(flat, 0) - flat  # F*R start of each bag in values
    key_base = torch.arange(len(keys), device=rows.device).unsqueeze(1) * num_rows
    sel = (key_base + rows.unsqueeze(0)).reshape(-1)  # F*M
    sel_len = flat[sel]
    sel_start = starts[sel]
    out_starts = torch.cumsum(sel_len, 0) - sel_len
    total = int(sel_len.sum())
    idx = torch.repeat_interleave(sel_start - out_starts, sel_len, output_size=total)
    idx = idx + torch.arange(total, device=idx.device)
    weights = kjt.weights_or_none()
    return KeyedJaggedTensor(
        keys=keys,
        values=kjt.values()[idx],
        lengths=sel_len,
        weights=None if weights is None else weights[idx],
    )


def jagged(keys: Sequence[str], bags: Sequence[tuple[np.ndarray, np.ndarray]]) -> KeyedJaggedTensor:
    """A KJT from one ``(lengths R, values)`` pair per key (same ``R`` for every key)."""
    lengths = np.concatenate([b[0] for b in bags]).astype(np.int32)
    values = np.concatenate([b[1] for b in bags]).astype(np.int64)
    return KeyedJaggedTensor(
        keys=list(keys), values=torch.from_numpy(values), lengths=torch.from_numpy(lengths)
    )


@dataclass
class FeatureTable:
    """Row-indexed features of users or items.

    Attributes:
        dense: ``R x D`` float32 (``D`` may be 0).
        sparse: KJT with ``R`` rows (``stride() == R``).
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor

    def __post_init__(self) -> None:
        if self.dense.dim() != 2:
            raise ValueError(f"FeatureTable.dense must be R x D, got {tuple(self.dense.shape)}")
        if self.sparse.stride() != self.dense.shape[0]:
            raise ValueError(
                f"FeatureTable rows differ: dense has {self.dense.shape[0]}, sparse "
                f"{self.sparse.stride()}"
            )

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def take(self, rows: torch.Tensor) -> FeatureTable:
        """The rows ``rows`` (``M`` long indices) as a new table of ``M`` rows."""
        rows = rows.to(self.dense.device)
        return FeatureTable(self.dense[rows], take_rows(self.sparse, rows))

    def to(self, device: torch.device | str) -> FeatureTable:
        return FeatureTable(self.dense.to(device), self.sparse.to(torch.device(device)))


@dataclass
class RetrievalBatch:
    """One training batch of ``B`` (user, positive item) pairs.

    Attributes:
        user_dense: ``B x Du``; user_sparse: user-side KJT of ``B`` rows.
        item_dense: ``B x Di``; item_sparse: item-side KJT of ``B`` rows (the positives).
        item_ids: ``B`` long, the positives' item ids (rows of the catalog).
    """

    user_dense: torch.Tensor
    user_sparse: KeyedJaggedTensor
    item_dense: torch.Tensor
    item_sparse: KeyedJaggedTensor
    item_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    def to(self, device: torch.device, non_blocking: bool = False) -> RetrievalBatch:
        return RetrievalBatch(
            self.user_dense.to(device, non_blocking=non_blocking),
            self.user_sparse.to(device, non_blocking=non_blocking),
            self.item_dense.to(device, non_blocking=non_blocking),
            self.item_sparse.to(device, non_blocking=non_blocking),
            self.item_ids.to(device, non_blocking=non_blocking),
        )


@dataclass
class TrainingPairs:
    """Training events: ``users`` row ``r`` holds the user-side features at event ``r`` (built
    without leakage, e.g. with :func:`recsys.data.history.build_histories`), ``item_ids[r]``
    (``R`` long) the item engaged with. Batches look the item features up in the catalog."""

    users: FeatureTable
    item_ids: torch.Tensor

    def __post_init__(self) -> None:
        if self.item_ids.shape != (len(self.users),):
            raise ValueError(
                f"TrainingPairs.item_ids must have one id per user row ({len(self.users)}), "
                f"got shape {tuple(self.item_ids.shape)}"
            )

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, rows: torch.Tensor, catalog: FeatureTable) -> RetrievalBatch:
        """The pairs ``rows`` (``B`` long) with their items' catalog features."""
        users = self.users.take(rows)
        ids = self.item_ids[rows]
        items = catalog.take(ids)
        return RetrievalBatch(users.dense, users.sparse, items.dense, items.sparse, ids)


class PairBatches:
    """Epochs of :class:`TrainingPairs` batches for the training loop.

    Epoch ``e`` is a permutation drawn from a generator seeded ``seed * 1_000_003 + e`` (no
    shuffling with ``shuffle=False``), cut into batches of ``batch_size`` (the last may be
    smaller). ``iter_from(b)`` starts at batch ``b`` of the current epoch, which is what an
    exact resume needs.
    """

    def __init__(
        self,
        pairs: TrainingPairs,
        catalog: FeatureTable,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pairs = pairs
        self.catalog = catalog
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.pairs), generator=gen)

    def iter_from(self, batch_index: int) -> Iterator[RetrievalBatch]:
        n = len(self.pairs)
        order = self._order()
        for start in range(batch_index * self.batch_size, n, self.batch_size):
            rows = torch.arange(start, min(start + self.batch_size, n))
            yield self.pairs.batch(rows if order is None else order[rows], self.catalog)

    def __iter__(self) -> Iterator[RetrievalBatch]:
        return self.iter_from(0)
