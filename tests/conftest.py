"""Shared fixtures: real data sets from ../shared/data (skipped where absent) and a tiny
prepared data set built from an in-test raw source."""

from __future__ import annotations

import os

# As the CLI does: before torch loads OpenMP (see recsys.cli.main).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.prepared import PreparedDataset, prepare
from recsys.data.preprocess import PreprocessConfig
from recsys.data.source import ReadReport
from recsys.data.split import SplitConfig
from recsys.train.tasks.ranking import RankingTask
from recsys.types import FeatureSpec, RawSchema

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """A path under ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data set not available: {path} (the shared data folder is absent)")
    return path


@pytest.fixture(scope="session")
def ml100k() -> Path:
    return shared_data("ml-100k")


@pytest.fixture(scope="session")
def criteo_head() -> Path:
    return shared_data("criteo-kaggle-head1000/train.txt")


class ToySource:
    """A raw source with learnable structure: 2 labels, 3 dense, 3 sparse, 1 multi-valued."""

    name = "toy"

    def __init__(self, rows: int = 6000, seed: int = 0, chunk: int = 2500) -> None:
        self.rows, self.seed, self.chunk = rows, seed, chunk
        self.schema = RawSchema(
            labels=("click", "like"),
            dense=("d0", "d1", "d2"),
            sparse=("user", "item", "cat"),
            multi=("tags",),
            timestamp="ts",
        )
        self.report = ReadReport()

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        rng = np.random.default_rng(self.seed)
        n = self.rows
        user = rng.integers(0, 200, n)
        item = rng.integers(0, 300, n)
        cat = rng.integers(0, 5, n)
        dense = rng.normal(size=(n, 3))
        user_bias = rng.normal(size=200)
        item_bias = rng.normal(size=300)
        ntags = rng.integers(0, 4, n)
        logit = user_bias[user] + item_bias[item] + 0.8 * dense[:, 0] - 0.5 * (cat == 2)
        click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        like = (rng.random(n) < 1 / (1 + np.exp(-(logit - 1.0)))).astype(np.float32)
        tags = [[f"t{(i + k) % 7}" for k in range(t)] for i, t in enumerate(ntags)]
        frame = pl.DataFrame(
            {
                "click": click,
                "like": like,
                "d0": dense[:, 0],
                "d1": dense[:, 1],
                "d2": np.abs(dense[:, 2]) * 10,
                "user": user.astype(str),
                "item": item.astype(str),
                "cat": cat.astype(str),
                "tags": tags,
                "ts": np.arange(n, dtype=np.int64) // 3,
                "_row": np.arange(n, dtype=np.int64),
            },
            schema_overrides={"tags": pl.List(pl.Utf8)},
        )
        for start in range(0, n, self.chunk):
            part = frame.slice(start, self.chunk)
            self.report.rows_read += part.height
            yield part

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "rows": self.rows, "seed": self.seed}


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("toy") / "prepared"
    return prepare(
        ToySource(), out, PreprocessConfig(), SplitConfig(kind="temporal"), fingerprint="toy-v1"
    )


def random_kjt(spec: FeatureSpec, batch: int, g: torch.Generator | int = 0) -> KeyedJaggedTensor:
    """Random ids for ``spec``: one per row for single-valued features, 0..3 (some rows empty)
    for multi-hot ones. ``g`` is a generator or a seed."""
    if isinstance(g, int):
        g = torch.Generator().manual_seed(g)
    values, lengths = [], []
    for f in spec.sparse:
        lens = (
            torch.randint(0, 4, (batch,), generator=g)
            if f.multi_hot
            else torch.ones(batch, dtype=torch.long)
        )
        lengths.append(lens)
        values.append(torch.randint(0, f.cardinality, (int(lens.sum()),), generator=g))
    return KeyedJaggedTensor.from_lengths_sync(
        spec.sparse_names, torch.cat(values), torch.cat(lengths)
    )


class CrashingLoader:
    """Wraps a loader and raises after ``after`` batches in total (a crash mid-training)."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.served = inner, after, 0

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def iter_from(self, batch_index: int):
        for batch in self.inner.iter_from(batch_index):
            if self.served == self.after:
                raise RuntimeError("simulated crash")
            self.served += 1
            yield batch


def ranking(
    labels, *, ds: PreparedDataset, loss_weights: dict[str, float] | None = None
) -> RankingTask:
    """The ranking task over ``ds`` with its valid and test splits (4096-row eval batches)."""
    return RankingTask(
        labels,
        eval_loaders={
            "valid": lambda: ds.loader("valid", 4096),
            "test": lambda: ds.loader("test", 4096),
        },
        loss_weights=loss_weights,
    )
