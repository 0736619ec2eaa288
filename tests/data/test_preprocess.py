"""Tests of splits, preprocessing, artifacts and the prepare() pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.data.prepared import load_prepared, prepare
from recsys.data.preprocess import FittedPreprocessor, PreprocessConfig, fnv1a64, hash_to_ids
from recsys.data.source import ReadReport
from recsys.data.split import SplitConfig, split_sizes
from recsys.types import DataError, RawSchema


class FrameSource:
    """A tiny in-memory RawSource that yields ``frame`` in chunks of ``chunk_size`` rows."""

    def __init__(self, frame: pl.DataFrame, schema: RawSchema, chunk_size: int = 7) -> None:
        self.name = "frame"
        self.schema = schema
        self.report = ReadReport()
        self.frame = frame
        self.chunk_size = chunk_size
        self.calls = 0

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        self.calls += 1
        self.report = ReadReport()
        for start in range(0, self.frame.height, self.chunk_size):
            chunk = self.frame.slice(start, self.chunk_size)
            self.report.rows_read += chunk.height
            yield chunk

    def describe(self) -> dict[str, object]:
        return {"kind": "frame", "rows": self.frame.height}


SCHEMA = RawSchema(
    labels=("click",),
    dense=("d1", "d2"),
    sparse=("s1", "s2"),
    multi=("m",),
    timestamp="ts",
    aux=("user",),
)


def make_frame(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    d1 = rng.exponential(5.0, n)
    d1[rng.random(n) < 0.1] = np.nan  # NaN is treated as missing
    s1 = rng.choice(["a", "b", "c", "d", "e"], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]).tolist()
    s1 = [None if rng.random() < 0.1 else v for v in s1]
    multi = []
    for _ in range(n):
        k = int(rng.integers(0, 4))
        multi.append([str(x) for x in rng.choice(["g1", "g2", "g3", "g4"], k)])
    return pl.DataFrame(
        {
            "click": (rng.random(n) < 0.3).astype(np.float32),
            "d1": [None if np.isnan(x) else float(x) for x in d1],
            "d2": rng.normal(0, 10, n),
            "s1": s1,
            "s2": [f"id{int(x)}" for x in rng.integers(0, 60, n)],
            "m": multi,
            "ts": rng.integers(0, 20, n).astype(np.int64),
            "user": rng.integers(0, 10, n).astype(np.int64),
            "_row": np.arange(n, dtype=np.int64),
        },
        schema_overrides={"m": pl.List(pl.String), "d1": pl.Float64},
    )


def split_rows(ds, split: str) -> list[int]:
    return ds.read_frame(split, ["_row"])["_row"].to_list()


# --------------------------------------------------------------------------- splits


def test_split_sizes_exact() -> None:
    assert split_sizes(37, (0.8, 0.1, 0.1)) == (29, 4, 4)
    assert split_sizes(100, (0.29, 0.71, 0.0)) == (29, 71, 0)
    assert split_sizes(10, (1.0, 0.0, 0.0)) == (10, 0, 0)
    assert split_sizes(0, (0.8, 0.1, 0.1)) == (0, 0, 0)
    with pytest.raises(ValueError):
        SplitConfig(fractions=(0.5, 0.1, 0.1))


def test_temporal_split_boundaries_and_tie_order(tmp_path: Path) -> None:
    frame = make_frame(37)
    ds = prepare(FrameSource(frame, SCHEMA), tmp_path, PreprocessConfig(), SplitConfig())
    order = frame.sort(["ts", "_row"])["_row"].to_list()  # ties keep file order
    assert sorted(split_rows(ds, "train")) == sorted(order[:29])
    assert sorted(split_rows(ds, "valid")) == sorted(order[29:33])
    assert sorted(split_rows(ds, "test")) == sorted(order[33:])
    assert [ds.num_rows(s) for s in ("train", "valid", "test")] == [29, 4, 4]


def test_temporal_all_equal_timestamps_keeps_file_order(tmp_path: Path) -> None:
    frame = make_frame(20).with_columns(pl.lit(7, dtype=pl.Int64).alias("ts"))
    ds = prepare(FrameSource(frame, SCHEMA, 3), tmp_path, PreprocessConfig(), SplitConfig())
    assert split_rows(ds, "train") == list(range(16))
    assert split_rows(ds, "valid") == [16, 17]
    assert split_rows(ds, "test") == [18, 19]


def test_temporal_without_timestamp_uses_row_order(tmp_path: Path) -> None:
    schema = RawSchema(labels=("click",), dense=("d1",), sparse=("s1",))
    frame = make_frame(30).select("click", "d1", "s1", "_row")
    frame = frame.with_columns((pl.col("_row") * 3 + 5).alias("_row"))  # gaps are fine
    ds = prepare(FrameSource(frame, schema, 4), tmp_path, PreprocessConfig(), SplitConfig())
    rows = frame["_row"].to_list()
    assert split_rows(ds, "train") == rows[:24]
    assert split_rows(ds, "valid") == rows[24:27]
    assert split_rows(ds, "test") == rows[27:]
    assert ds.spec.timestamp is None


def test_random_split_deterministic_disjoint_and_chunking_independent(tmp_path: Path) -> None:
    frame = make_frame(101)
    cfg = SplitConfig(kind="random", seed=3)
    a = prepare(FrameSource(frame, SCHEMA, 5), tmp_path / "a", PreprocessConfig(), cfg)
    b = prepare(
        FrameSource(frame, SCHEMA, 50), tmp_path / "b", PreprocessConfig(), cfg, rows_per_part=13
    )
    sets = {s: set(split_rows(a, s)) for s in ("train", "valid", "test")}
    assert [len(sets[s]) for s in ("train", "valid", "test")] == [80, 10, 11]
    assert sets["train"] | sets["valid"] | sets["test"] == set(range(101))
    assert not (sets["train"] & sets["valid"]) and not (sets["valid"] & sets["test"])
    for s in ("train", "valid", "test"):
        assert set(split_rows(b, s)) == sets[s]
    assert len(b.files("train")) > 1
    other = prepare(
        FrameSource(frame, SCHEMA),
        tmp_path / "c",
        PreprocessConfig(),
        SplitConfig("random", seed=4),
    )
    assert set(split_rows(other, "valid")) != sets["valid"]
    assert sets["train"] != set(range(80))  # not file order


# --------------------------------------------------------------------------- preprocessing


def _fit(frame: pl.DataFrame, config: PreprocessConfig, schema: RawSchema = SCHEMA):
    return FittedPreprocessor.fit(frame.lazy(), schema, config)


def test_vocab_min_freq_oov_and_missing_ids() -> None:
    schema = RawSchema(labels=("y",), sparse=("s",))
    values = ["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["z"] + [None] * 2
    train = pl.DataFrame({"y": [0.0] * len(values), "s": values, "_row": range(len(values))})
    pre = _fit(train, PreprocessConfig(min_freq=2), schema)
    vocab = pre.categorical["s"].vocab
    assert vocab.to_dicts() == [
        {"value": "c", "id": 2, "count": 5},
        {"value": "a", "id": 3, "count": 3},  # equal counts: ordered by value
        {"value": "b", "id": 4, "count": 3},
    ]
    assert pre.feature_spec().sparse[0].cardinality == 5
    out = pre.transform(pl.DataFrame({"s": ["a", "z", None, "new", "c"]}))
    assert out["s"].to_list() == [3, 1, 0, 1, 2]
    assert out["s"].dtype == pl.Int64
    capped = _fit(train, PreprocessConfig(max_vocab=2), schema)
    assert capped.categorical["s"].vocab["value"].to_list() == ["c", "a"]
    assert capped.transform(pl.DataFrame({"s": ["b"]}))["s"].to_list() == [1]


def test_hashing_range_determinism_and_reference() -> None:
    def ref(s: str) -> int:
        h = 0xCBF29CE484222325
        for byte in s.encode():
            h = ((h ^ byte) * 0x100000001B3) % (1 << 64)
        return h

    words = ["", "a", "hello", "ünïcode", "x" * 40, "id123"]
    assert fnv1a64(pl.Series(words)).tolist() == [ref(w) for w in words]
    series = pl.Series("s", [f"v{i}" for i in range(500)] + [None])
    ids = hash_to_ids(series, 17).to_numpy()
    assert ids[-1] == 0 and ids[:-1].min() >= 2 and ids[:-1].max() < 19
    assert len(set(ids[:-1])) == 17
    assert (hash_to_ids(series.slice(100, 50), 17).to_numpy() == ids[100:150]).all()

    schema = RawSchema(labels=("y",), sparse=("s",), multi=("m",))
    train = pl.DataFrame(
        {"y": [0.0, 1.0], "s": ["a", None], "m": [["a", None], None], "_row": [0, 1]},
        schema_overrides={"m": pl.List(pl.String)},
    )
    pre = _fit(train, PreprocessConfig(hash_buckets={"s": 10, "m": 10}), schema)
    assert [f.cardinality for f in pre.feature_spec().sparse] == [12, 12]
    out = pre.transform(train)
    a = 2 + ref("a") % 10
    assert out["s"].to_list() == [a, 0]
    assert out["m"].to_list() == [[a, 0], []]
    with pytest.raises(ValueError, match="not sparse/multi"):
        _fit(train, PreprocessConfig(hash_buckets={"nope": 3}), schema)


def test_dense_fill_log1p_standardize_from_train_only(tmp_path: Path) -> None:
    frame = make_frame(100)
    config = PreprocessConfig(fill=-2.0, log1p=["d1", "d2"])
    ds = prepare(FrameSource(frame, SCHEMA), tmp_path, config, SplitConfig())
    train_rows = split_rows(ds, "train")
    raw_train = frame.filter(pl.col("_row").is_in(train_rows))

    def pre_standardize(x: np.ndarray) -> np.ndarray:
        x = np.where(np.isfinite(x), x, -2.0)
        return np.sign(x) * np.log1p(np.abs(x))

    stats = json.loads((tmp_path / "artifacts" / "dense_stats.json").read_text())
    for col in ("d1", "d2"):
        t = pre_standardize(raw_train[col].fill_null(np.nan).to_numpy())
        assert stats[col]["mean"] == pytest.approx(t.mean())
        assert stats[col]["std"] == pytest.approx(t.std())
        assert stats[col]["log1p"] is True and stats[col]["fill"] == -2.0
        got = ds.read_frame("train").sort("_row")[col].to_numpy()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, (t - t.mean()) / t.std(), rtol=1e-5, atol=1e-5)
        raw_test = frame.filter(pl.col("_row").is_in(split_rows(ds, "test")))
        tt = pre_standardize(raw_test[col].fill_null(np.nan).to_numpy())
        test_got = ds.read_frame("test").sort("_row")[col].to_numpy()
        np.testing.assert_allclose(test_got, (tt - t.mean()) / t.std(), rtol=1e-5, atol=1e-5)
    assert (frame["d2"] < 0).any()  # sign-preserving log1p was exercised

    plain = _fit(frame, PreprocessConfig(standardize=False))
    assert plain.dense["d2"].mean == 0.0 and plain.dense["d2"].std == 1.0
    odd = [pl.Series("d1", [None, 3.0]), pl.Series("d2", [float("inf"), -1.5])]
    out = plain.transform(frame.head(2).with_columns(odd))
    assert out["d1"].to_list() == [0.0, 3.0] and out["d2"].to_list() == [0.0, -1.5]


def test_multi_hot_lists() -> None:
    schema = RawSchema(labels=("y",), multi=("m",))
    train = pl.DataFrame(
        {"y": [1.0] * 4, "m": [["x", "y"], [], ["x"], None], "_row": range(4)},
        schema_overrides={"m": pl.List(pl.String)},
    )
    pre = _fit(train, PreprocessConfig(), schema)
    assert pre.feature_spec().sparse[0].multi_hot and pre.feature_spec().sparse[0].cardinality == 4
    new = pl.DataFrame(
        {"m": [["y", "x", "x"], [], None, ["new", None]]},
        schema_overrides={"m": pl.List(pl.String)},
    )
    out = pre.transform(new)
    assert out["m"].dtype == pl.List(pl.Int64)
    assert out["m"].to_list() == [[3, 2, 2], [], [], [1, 0]]


def test_transform_missing_column_names_it() -> None:
    pre = _fit(make_frame(30), PreprocessConfig())
    with pytest.raises(DataError, match="field s2"):
        pre.transform(make_frame(5).drop("s2"))
    with pytest.raises(DataError, match="field d1"):
        pre.transform(make_frame(5).with_columns(pl.lit("oops").alias("d1")))


# --------------------------------------------------------------------------- prepare()


def test_manifest_contents_and_layout(tmp_path: Path) -> None:
    frame = make_frame(120)
    ds = prepare(
        FrameSource(frame, SCHEMA),
        tmp_path,
        PreprocessConfig(min_freq=2),
        SplitConfig(),
        rows_per_part=50,
        row_group_size=16,
    )
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m == ds.manifest
    for key in (
        "fingerprint",
        "source",
        "raw_schema",
        "feature_spec",
        "splits",
        "read_report",
        "preprocess",
        "split",
        "created_at",
    ):
        assert key in m
    assert m["source"] == {"kind": "frame", "rows": 120}
    assert m["read_report"]["rows_read"] == 120
    assert RawSchema.from_dict(m["raw_schema"]) == SCHEMA
    assert m["preprocess"]["min_freq"] == 2 and m["split"]["kind"] == "temporal"
    assert [f["name"] for f in m["feature_spec"]["sparse"]] == ["s1", "s2", "m"]
    assert ds.spec.sparse[2].multi_hot and not ds.spec.sparse[0].multi_hot
    assert ds.spec.dense == ("d1", "d2") and ds.spec.labels == ("click",)
    total = 0
    for split in ("train", "valid", "test"):
        info = m["splits"][split]
        got = ds.read_frame(split)
        assert info["rows"] == got.height
        assert info["positive_rate"]["click"] == pytest.approx(got["click"].mean())
        assert all((tmp_path / f).exists() for f in info["files"])
        total += got.height
    assert total == 120 and len(ds.files("train")) == 3
    train = ds.read_frame("train")
    assert train.columns == ["click", "d1", "d2", "s1", "s2", "m", "ts", "user", "_row"]
    assert dict(train.schema) == {
        "click": pl.Float32,
        "d1": pl.Float32,
        "d2": pl.Float32,
        "s1": pl.Int64,
        "s2": pl.Int64,
        "m": pl.List(pl.Int64),
        "ts": pl.Int64,
        "user": pl.Int64,
        "_row": pl.Int64,
    }
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == [
        "dense_stats.json",
        "preprocess.json",
        "vocab",
    ]
    assert len(list((tmp_path / "artifacts" / "vocab").glob("*.parquet"))) == 3
    for split in ("train", "valid", "test"):
        ids = ds.read_frame(split)
        for f in ds.spec.sparse:
            col = ids[f.name].explode() if f.multi_hot else ids[f.name]
            assert col.drop_nulls().min() >= 0 and col.drop_nulls().max() < f.cardinality


def test_caching_by_fingerprint(tmp_path: Path) -> None:
    src = FrameSource(make_frame(40), SCHEMA)
    a = prepare(src, tmp_path, PreprocessConfig(), SplitConfig(), fingerprint="v1")
    created = a.manifest["created_at"]
    b = prepare(src, tmp_path, PreprocessConfig(), SplitConfig(), fingerprint="v1")
    assert src.calls == 1 and b.manifest["created_at"] == created
    assert load_prepared(tmp_path).manifest["fingerprint"] == "v1"
    # different fingerprint: rebuild in place, old parts removed
    (tmp_path / "train" / "part-09999.parquet").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("kept")
    c = prepare(src, tmp_path, PreprocessConfig(min_freq=3), SplitConfig(), fingerprint="v2")
    assert src.calls == 2 and c.manifest["fingerprint"] == "v2"
    assert not (tmp_path / "train" / "part-09999.parquet").exists()
    assert (tmp_path / "notes.txt").read_text() == "kept"
    prepare(src, tmp_path, PreprocessConfig(), SplitConfig(), fingerprint="v2", overwrite=True)
    assert src.calls == 3
    # default fingerprint depends on the configs
    prepare(src, tmp_path / "d", PreprocessConfig(), SplitConfig())
    prepare(src, tmp_path / "d", PreprocessConfig(), SplitConfig())
    assert src.calls == 4
    prepare(src, tmp_path / "d", PreprocessConfig(fill=1.0), SplitConfig())
    assert src.calls == 5


def test_crashed_prepare_leaves_no_manifest(tmp_path: Path) -> None:
    class Broken(FrameSource):
        def iter_chunks(self) -> Iterator[pl.DataFrame]:
            yield from super().iter_chunks()
            raise OSError("disk vanished")

    src = FrameSource(make_frame(30), SCHEMA)
    prepare(src, tmp_path, PreprocessConfig(), SplitConfig(), fingerprint="v1")
    with pytest.raises(OSError, match="vanished"):
        prepare(
            Broken(make_frame(30), SCHEMA),
            tmp_path,
            PreprocessConfig(),
            SplitConfig(),
            fingerprint="v2",
        )
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match=r"manifest\.json"):
        load_prepared(tmp_path)


def test_bad_sources_get_clear_errors(tmp_path: Path) -> None:
    frame = make_frame(20)
    with pytest.raises(DataError, match="field user"):
        prepare(
            FrameSource(frame.drop("user"), SCHEMA),
            tmp_path / "a",
            PreprocessConfig(),
            SplitConfig(),
        )
    shuffled = frame.with_columns(pl.Series("_row", [1, 0, *range(2, 20)]))
    with pytest.raises(DataError, match="_row must strictly increase"):
        prepare(FrameSource(shuffled, SCHEMA), tmp_path / "b", PreprocessConfig(), SplitConfig())
    with pytest.raises(DataError, match="field click"):
        prepare(
            FrameSource(frame.with_columns(pl.lit(None).alias("click")), SCHEMA),
            tmp_path / "c",
            PreprocessConfig(),
            SplitConfig(),
        )


def test_artifacts_reproduce_stored_splits_and_map_unseen_to_oov(tmp_path: Path) -> None:
    frame = make_frame(150)
    config = PreprocessConfig(min_freq=2, log1p=True, hash_buckets={"s2": 8})
    ds = prepare(FrameSource(frame, SCHEMA, 11), tmp_path, config, SplitConfig("random", seed=1))
    pre = ds.preprocessor()
    assert pre.feature_spec() == ds.spec
    for split in ("train", "test"):
        stored = ds.read_frame(split).sort("_row")
        raw = frame.filter(pl.col("_row").is_in(stored["_row"].to_list())).sort("_row")
        again = FittedPreprocessor.load(tmp_path / "artifacts").transform(raw)
        assert again.equals(stored)
    raw_parts = pl.read_parquet(tmp_path / "raw")
    assert raw_parts.height == 150
    unseen = frame.head(3).with_columns(
        pl.Series("s1", ["never", None, "seen?"]),
        pl.Series("m", [["zzz"], [], ["g1", "qq"]], dtype=pl.List(pl.String)),
    )
    out = pre.transform(unseen.drop("click", "ts", "user", "_row"))
    assert out.columns == ["d1", "d2", "s1", "s2", "m"]
    assert out["s1"].to_list() == [1, 0, 1]
    g1 = pre.categorical["m"].vocab.filter(pl.col("value") == "g1")["id"].item()
    assert out["m"].to_list() == [[1], [], [g1, 1]]
