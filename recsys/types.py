"""Shared dataclasses and aliases. Imports nothing from ``recsys``.

The three contracts that tie the package together:

* :class:`RawSchema` describes a table as a reader or the synthetic generator produces it
  (before vocabularies and scaling): which columns are labels, dense numbers, single-valued
  categoricals, multi-valued categoricals, the timestamp, and auxiliary columns that travel
  with the rows but are never model inputs.
* :class:`FeatureSpec` describes a *prepared* data set: dense feature names, sparse features
  with their cardinalities, and label names. Models are built from it.
* :class:`Batch` is what the loader yields and what models and the trainer consume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

Pooling = Literal["sum", "mean"]


class DataError(ValueError):
    """Bad input data: the message names the file, the line (1-based) and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        value: str | None = None,
    ) -> None:
        where = []
        if path is not None:
            where.append(f"file {path}")
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field}")
        text = message if not where else f"{', '.join(where)}: {message}"
        if value is not None:
            text += f" (value {value!r})"
        super().__init__(text)
        self.path = path
        self.line = line
        self.field = field
        self.value = value


@dataclass(frozen=True)
class RawSchema:
    """Column roles of a raw table (reader or generator output, before preprocessing).

    Column dtypes in raw frames: labels numeric (0/1 or ratings already thresholded to 0/1),
    dense ``Float64`` (null = missing), sparse ``Utf8`` (null = missing), multi
    ``List(Utf8)``, timestamp ``Int64`` (unix seconds), aux any dtype.
    """

    labels: tuple[str, ...]
    dense: tuple[str, ...] = ()
    sparse: tuple[str, ...] = ()
    multi: tuple[str, ...] = ()
    timestamp: str | None = None
    aux: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        """All column names in a fixed order: labels, dense, sparse, multi, timestamp, aux."""
        cols = [*self.labels, *self.dense, *self.sparse, *self.multi]
        if self.timestamp is not None:
            cols.append(self.timestamp)
        cols.extend(self.aux)
        return cols

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RawSchema:
        return cls(
            labels=tuple(d["labels"]),
            dense=tuple(d.get("dense", ())),
            sparse=tuple(d.get("sparse", ())),
            multi=tuple(d.get("multi", ())),
            timestamp=d.get("timestamp"),
            aux=tuple(d.get("aux", ())),
        )


@dataclass(frozen=True)
class SparseFeature:
    """One categorical feature after preprocessing.

    Ids are contiguous in ``[0, cardinality)``. ``multi_hot`` features have a variable number
    of ids per row, pooled by ``pooling`` inside the embedding bag.
    """

    name: str
    cardinality: int
    multi_hot: bool = False
    pooling: Pooling = "sum"


@dataclass(frozen=True)
class FeatureSpec:
    """The model-facing description of a prepared data set."""

    dense: tuple[str, ...]
    sparse: tuple[SparseFeature, ...]
    labels: tuple[str, ...]
    timestamp: str | None = None

    @property
    def num_dense(self) -> int:
        return len(self.dense)

    @property
    def num_tasks(self) -> int:
        return len(self.labels)

    @property
    def sparse_names(self) -> list[str]:
        return [f.name for f in self.sparse]

    def sparse_feature(self, name: str) -> SparseFeature:
        for f in self.sparse:
            if f.name == name:
                return f
        raise KeyError(f"unknown sparse feature {name!r}; known: {self.sparse_names}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dense": list(self.dense),
            "sparse": [dataclasses.asdict(f) for f in self.sparse],
            "labels": list(self.labels),
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            dense=tuple(d["dense"]),
            sparse=tuple(SparseFeature(**f) for f in d["sparse"]),
            labels=tuple(d["labels"]),
            timestamp=d.get("timestamp"),
        )


@dataclass
class Batch:
    """One mini-batch.

    Attributes:
        dense: ``B x D`` float32 (``D`` may be 0).
        sparse: ``KeyedJaggedTensor`` with one key per sparse feature, in ``FeatureSpec`` order;
            values int64 ids, lengths ``F * B`` (1 per row for single-valued features).
        labels: ``B x T`` float32 in {0, 1}.
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor
    labels: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            dense=self.dense.to(device, non_blocking=non_blocking),
            sparse=self.sparse.to(torch.device(device), non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            extras={k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()},
        )

    def pin_memory(self) -> Batch:
        return Batch(
            dense=self.dense.pin_memory(),
            sparse=self.sparse.pin_memory(),
            labels=self.labels.pin_memory(),
            extras={k: v.pin_memory() for k, v in self.extras.items()},
        )
