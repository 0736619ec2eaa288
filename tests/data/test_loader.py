"""Tests of the Parquet batch loader."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.loader import ParquetBatchLoader
from recsys.data.prepared import prepare
from recsys.data.preprocess import PreprocessConfig
from recsys.data.source import ReadReport
from recsys.data.split import SplitConfig
from recsys.types import Batch, DataError, FeatureSpec, RawSchema, SparseFeature

SPEC = FeatureSpec(
    dense=("d0", "d1", "d2"),
    sparse=(
        SparseFeature("a", 50),
        SparseFeature("tags", 9, multi_hot=True),
        SparseFeature("b", 70),
    ),
    labels=("click", "like"),
)


def write_files(
    tmp_path: Path, sizes: tuple[int, ...] = (23, 40, 1, 17), rg: int = 6
) -> pl.DataFrame:
    """Writes one prepared-layout file per size (row groups of ``rg`` rows); returns all rows."""
    rng = np.random.default_rng(0)
    frames = []
    start = 0
    for i, n in enumerate(sizes):
        tags = [rng.integers(0, 9, int(rng.integers(0, 4))).tolist() for _ in range(n)]
        frame = pl.DataFrame(
            {
                "click": rng.integers(0, 2, n).astype(np.float32),
                "like": rng.integers(0, 2, n).astype(np.float32),
                "d0": rng.normal(size=n).astype(np.float32),
                "d1": rng.normal(size=n).astype(np.float32),
                "d2": rng.normal(size=n).astype(np.float32),
                "a": rng.integers(0, 50, n),
                "b": rng.integers(0, 70, n),
                "tags": tags,
                "_row": np.arange(start, start + n, dtype=np.int64),
            },
            schema_overrides={"tags": pl.List(pl.Int64)},
        )
        frame.write_parquet(tmp_path / f"part-{i:05d}.parquet", row_group_size=rg)
        frames.append(frame)
        start += n
    return pl.concat(frames)


def files_of(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("part-*.parquet"))


def unbatch(batches: list[Batch]) -> dict[str, object]:
    """Concatenates batches back into per-column arrays / lists."""
    rows: dict[str, list] = {"dense": [], "labels": [], "a": [], "b": [], "tags": [], "_row": []}
    for batch in batches:
        rows["dense"].append(batch.dense.numpy())
        rows["labels"].append(batch.labels.numpy())
        jt = batch.sparse.to_dict()
        rows["a"] += jt["a"].values().tolist()
        rows["b"] += jt["b"].values().tolist()
        rows["tags"] += [t.tolist() for t in jt["tags"].to_dense()]
        if "_row" in batch.extras:
            rows["_row"] += batch.extras["_row"].tolist()
    rows["dense"] = np.concatenate(rows["dense"])
    rows["labels"] = np.concatenate(rows["labels"])
    return rows


def same_batches(xs: list[Batch], ys: list[Batch]) -> bool:
    if len(xs) != len(ys):
        return False
    for x, y in zip(xs, ys):
        if not (
            torch.equal(x.dense, y.dense)
            and torch.equal(x.labels, y.labels)
            and torch.equal(x.sparse.values(), y.sparse.values())
            and torch.equal(x.sparse.lengths(), y.sparse.lengths())
            and x.extras.keys() == y.extras.keys()
            and all(torch.equal(x.extras[k], y.extras[k]) for k in x.extras)
        ):
            return False
    return True


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_equal_parquet_contents(tmp_path: Path, prefetch: int) -> None:
    frame = write_files(tmp_path)
    loader = ParquetBatchLoader(files_of(tmp_path), SPEC, 10, prefetch=prefetch, extras=["_row"])
    assert loader.num_rows == 81 and len(loader) == 9
    batches = list(loader)
    assert [len(b) for b in batches] == [10] * 8 + [1]  # last partial batch kept
    got = unbatch(batches)
    np.testing.assert_array_equal(got["dense"], frame.select("d0", "d1", "d2").to_numpy())
    np.testing.assert_array_equal(got["labels"], frame.select("click", "like").to_numpy())
    assert got["a"] == frame["a"].to_list() and got["b"] == frame["b"].to_list()
    assert got["_row"] == list(range(81))
    # multi-hot: padded dense view loses nothing because ids here are >= 0; compare lengths too
    first = batches[0]
    assert first.sparse.keys() == ["a", "tags", "b"]
    assert first.dense.dtype == torch.float32 and first.dense.shape == (10, 3)
    assert first.labels.shape == (10, 2) and first.extras["_row"].dtype == torch.int64
    assert first.sparse.values().dtype == torch.int64
    lengths = first.sparse.lengths()
    assert lengths.dtype == torch.int32 and lengths.shape == (30,)
    assert lengths[:10].tolist() == [1] * 10 and lengths[20:].tolist() == [1] * 10
    tags = frame["tags"].to_list()
    assert lengths[10:20].tolist() == [len(t) for t in tags[:10]]
    assert 0 in lengths[10:20].tolist()  # empty lists are represented with length 0
    all_tags = [v for b in batches for v in b.sparse.to_dict()["tags"].values().tolist()]
    assert all_tags == [v for t in tags for v in t]
    per_row = [len(t) for b in batches for t in b.sparse.to_dict()["tags"].to_dense()]
    assert per_row == [len(t) for t in tags]


def test_drop_last_and_single_valued_only(tmp_path: Path) -> None:
    frame = write_files(tmp_path)
    spec = FeatureSpec(dense=("d1",), sparse=(SparseFeature("b", 70),), labels=("like",))
    loader = ParquetBatchLoader(files_of(tmp_path), spec, 8, drop_last=True, prefetch=0)
    batches = list(loader)
    assert len(loader) == 10 == len(batches) and all(len(b) == 8 for b in batches)
    values = torch.cat([b.sparse.values() for b in batches]).tolist()
    assert values == frame["b"].to_list()[:80]
    assert batches[0].sparse.lengths().tolist() == [1] * 8


def test_shuffle_deterministic_per_seed_and_epoch(tmp_path: Path) -> None:
    write_files(tmp_path)

    def run(seed: int, epoch: int) -> list[Batch]:
        loader = ParquetBatchLoader(
            files_of(tmp_path), SPEC, 7, shuffle=True, seed=seed, extras=["_row"], shuffle_buffer=2
        )
        loader.set_epoch(epoch)
        return list(loader)

    a, b = run(1, 0), run(1, 0)
    assert same_batches(a, b)
    rows_a = unbatch(a)["_row"]
    assert sorted(rows_a) == list(range(81)) and rows_a != list(range(81))
    assert unbatch(run(1, 1))["_row"] != rows_a
    assert unbatch(run(2, 0))["_row"] != rows_a
    # shuffled rows keep their columns together (multi-hot lists travel with their row)
    frame = pl.concat([pl.read_parquet(f) for f in files_of(tmp_path)])
    got = unbatch(a)
    by_row = frame.sort("_row")
    assert got["a"] == by_row["a"].gather(rows_a).to_list()
    tags = by_row["tags"].gather(rows_a).to_list()
    assert [t[: len(e)] for t, e in zip(got["tags"], tags)] == tags


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("prefetch", [0, 3])
def test_resume_from_batch_k(tmp_path: Path, shuffle: bool, prefetch: int) -> None:
    write_files(tmp_path)
    loader = ParquetBatchLoader(
        files_of(tmp_path), SPEC, 6, shuffle=shuffle, seed=5, prefetch=prefetch, extras=["_row"]
    )
    loader.set_epoch(3)
    full = list(loader)
    assert len(full) == len(loader) == 14
    for k in (0, 1, 4, 7, 13, 14, 20):
        assert same_batches(list(loader.iter_from(k)), full[k:]), k


class Boom(RuntimeError):
    pass


def test_prefetch_propagates_producer_exception(tmp_path: Path, monkeypatch) -> None:
    write_files(tmp_path)
    loader = ParquetBatchLoader(files_of(tmp_path), SPEC, 5, prefetch=2)
    calls = {"n": 0}
    real = loader._read

    def flaky(unit):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom("bad row group")
        return real(unit)

    monkeypatch.setattr(loader, "_read", flaky)
    seen = 0
    with pytest.raises(Boom, match="bad row group"):
        for _ in loader:
            seen += 1
    assert seen >= 1
    assert not _loader_threads()


def _loader_threads() -> list[threading.Thread]:
    for _ in range(100):
        alive = [t for t in threading.enumerate() if t.name == "recsys-loader-prefetch"]
        if not alive:
            return []
        threading.Event().wait(0.02)
    return alive


def test_early_stop_shuts_down_the_thread(tmp_path: Path) -> None:
    write_files(tmp_path, sizes=(200, 200), rg=10)
    loader = ParquetBatchLoader(files_of(tmp_path), SPEC, 4, prefetch=1)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    gc.collect()
    assert not _loader_threads()
    it = iter(loader)
    next(it)
    assert len([t for t in threading.enumerate() if t.name == "recsys-loader-prefetch"]) == 1
    it.close()  # type: ignore[attr-defined]
    assert not _loader_threads()
    unused = iter(loader)  # a never-started iterator starts no thread
    del unused
    assert not _loader_threads()


def test_missing_extra_column_is_a_clear_error(tmp_path: Path) -> None:
    write_files(tmp_path)
    with pytest.raises(DataError, match="field user"):
        ParquetBatchLoader(files_of(tmp_path), SPEC, 4, extras=["user"])


class TinySource:
    name = "tiny"

    def __init__(self, n: int) -> None:
        self.n = n
        self.schema = RawSchema(labels=("y",), dense=("x",), sparse=("s",), multi=("m",))
        self.report = ReadReport()

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        rng = np.random.default_rng(1)
        for start in range(0, self.n, 9):
            k = min(9, self.n - start)
            yield pl.DataFrame(
                {
                    "y": rng.integers(0, 2, k).astype(np.float32),
                    "x": rng.normal(size=k),
                    "s": [f"v{i}" for i in rng.integers(0, 5, k)],
                    "m": [
                        [f"t{j}" for j in rng.integers(0, 3, int(rng.integers(0, 3)))]
                        for _ in range(k)
                    ],
                    "_row": np.arange(start, start + k, dtype=np.int64),
                },
                schema_overrides={"m": pl.List(pl.String)},
            )
            self.report.rows_read += k

    def describe(self) -> dict[str, object]:
        return {"n": self.n}


def test_prepared_dataset_loader_round_trip(tmp_path: Path) -> None:
    ds = prepare(
        TinySource(60),
        tmp_path,
        PreprocessConfig(),
        SplitConfig("random", seed=2),
        row_group_size=8,
    )
    loader = ds.loader("train", 16, shuffle=True, seed=0, extras=["_row"])
    assert loader.num_rows == ds.num_rows("train") == 48 and len(loader) == 3
    plain = ds.loader("train", 16, shuffle_buffer=2)  # options and defaults: the loader's own
    assert (plain.shuffle, plain.seed, plain.prefetch, plain.shuffle_buffer) == (False, 0, 2, 2)
    batches = list(loader)
    frame = ds.read_frame("train")
    rows = [r for b in batches for r in b.extras["_row"].tolist()]
    assert sorted(rows) == sorted(frame["_row"].to_list())
    expect = frame.sort("_row")
    got_x = torch.cat([b.dense[:, 0] for b in batches]).numpy()
    order = np.argsort(rows)
    np.testing.assert_array_equal(got_x[order], expect["x"].to_numpy())
    m_lengths = np.concatenate([b.sparse.to_dict()["m"].lengths().numpy() for b in batches])[order]
    assert m_lengths.tolist() == expect["m"].list.len().to_list()


@pytest.mark.parametrize("world", [2, 3, 5])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_split_each_epoch_without_overlap_or_loss(
    tmp_path: Path, world: int, shuffle: bool, drop_last: bool
) -> None:
    write_files(tmp_path)  # 81 rows in row groups of 6: ranks share boundary row groups
    files = files_of(tmp_path)
    full = ParquetBatchLoader(files, SPEC, 7, shuffle=shuffle, seed=3, extras=("_row",))
    for epoch in (0, 1):
        full.set_epoch(epoch)
        stream = unbatch(list(full))["_row"]
        parts, lengths = [], set()
        for rank in range(world):
            loader = ParquetBatchLoader(
                files,
                SPEC,
                7,
                shuffle=shuffle,
                seed=3,
                extras=("_row",),
                drop_last=drop_last,
                rank=rank,
                world_size=world,
                prefetch=0,
            )
            loader.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == len(loader)
            lengths.add(len(loader))
            rows = unbatch(batches)["_row"]
            parts.append(rows)
            # resuming mid-epoch on one rank yields that rank's own continuation
            assert unbatch(list(loader.iter_from(1)))["_row"] == rows[len(batches[0]) :]
        assert len(lengths) == 1  # every rank steps the same number of times
        joined = [r for part in parts for r in part]
        assert len(joined) == len(set(joined))  # no row twice
        if drop_last:
            steps = next(iter(lengths))
            assert all(len(p) == 7 * steps for p in parts)  # full batches only
            assert set(joined) <= set(stream)
        else:
            assert joined == stream  # rank r's part is the r-th slice of the one-process stream


def test_more_ranks_than_rows_is_a_clear_error(tmp_path: Path) -> None:
    write_files(tmp_path, sizes=(3,))
    with pytest.raises(DataError, match="3 rows cannot be split over 4 workers"):
        ParquetBatchLoader(files_of(tmp_path), SPEC, 2, rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank 2 of 2"):
        ParquetBatchLoader(files_of(tmp_path), SPEC, 2, rank=2, world_size=2)
