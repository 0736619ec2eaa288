"""Helpers of the inference tests: a ranker manifest's preprocessing section built from a
fitted preprocessor, and the training pipeline's feeds (FittedPreprocessor.transform + the
batch loader) for the same raw rows, to compare with the request-time path."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsys.data.loader import ParquetBatchLoader
from recsys.data.prepared import PreparedDataset, prepare
from recsys.data.preprocess import FittedPreprocessor, PreprocessConfig
from recsys.data.readers.ctr_table import CtrTableReader
from recsys.data.split import SplitConfig
from recsys.data.synthetic import SocialConfig, SocialSource
from recsys.export.manifest import ids_input, lengths_input
from serving.inference.preprocess import PreprocessSettings, RankerPreprocessor

SOCIAL = SocialConfig(
    seed=5, n_users=300, n_authors=40, n_posts=900, n_impressions=6000, chunk_rows=6000
)
TEMPORAL = SplitConfig(kind="temporal")


@pytest.fixture(scope="session")
def social(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("social") / "prepared"
    config = PreprocessConfig(log1p=["post_age_hours"], hash_buckets={"post_id": 512}, min_freq=2)
    return prepare(SocialSource(SOCIAL), out, config, TEMPORAL)


@pytest.fixture(scope="session")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> tuple[PreparedDataset, dict[str, str]]:
    """A TSV CTR table: a vocab and a hashed sparse column, a hashed and a vocab multi column
    (``|``-separated, some empty), dense columns with gaps."""
    root = tmp_path_factory.mktemp("ctr")
    rng = np.random.default_rng(0)
    n = 1500
    lines = ["click\tprice\tqty\tuser\tad\ttags\tcats"]
    for _ in range(n):
        tags = "|".join(f"t{int(v)}" for v in rng.integers(0, 30, rng.integers(0, 4)))
        cats = "|".join(f"c{int(v)}" for v in rng.integers(0, 6, rng.integers(0, 3)))
        price = "" if rng.random() < 0.1 else f"{rng.exponential(20):.3f}"
        qty = str(int(rng.integers(-3, 50)))
        user, ad = f"u{rng.integers(0, 80)}", str(int(rng.integers(0, 400)))
        lines.append(f"{int(rng.random() < 0.3)}\t{price}\t{qty}\t{user}\t{ad}\t{tags}\t{cats}")
    path = root / "clicks.tsv"
    path.write_text("\n".join(lines) + "\n")
    separators = {"tags": "|", "cats": "|"}
    reader = CtrTableReader(
        path, labels=["click"], dense=["price", "qty"], sparse=["user", "ad"], multi=separators
    )
    config = PreprocessConfig(hash_buckets={"ad": 64, "tags": 16}, log1p=True, fill=-1.0)
    return prepare(reader, root / "prepared", config, SplitConfig(kind="random")), separators


def raw_rows(ds: PreparedDataset, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` raw rows (dicts) sampled from a prepared data set's raw copy."""
    raw = pl.read_parquet(sorted((ds.root / "raw").rglob("*.parquet")))
    return raw.sample(min(n, raw.height), seed=seed).to_dicts()


def preprocessing_section(
    pre: FittedPreprocessor, export_dir: Path, separators: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(manifest.preprocessing, manifest.feature_spec)`` of a ranker export of ``pre``, laid
    out as the exporter lays them out (artifacts under ``export_dir/preprocess``)."""
    pre.save(export_dir / "preprocess")
    meta = json.loads((export_dir / "preprocess" / "preprocess.json").read_text())
    categorical = {}
    for name, entry in meta["categorical"].items():
        entry = dict(entry)
        if "file" in entry:
            entry["file"] = f"preprocess/{entry['file']}"
        if entry["multi"]:
            entry["separator"] = (separators or {}).get(name)
        categorical[name] = entry
    section = {
        "artifacts": "preprocess",
        "raw_schema": pre.schema.to_dict(),
        "id_convention": meta["id_convention"],
        "dense": {name: st.to_dict() for name, st in pre.dense.items()},
        "categorical": categorical,
    }
    return section, pre.feature_spec().to_dict()


def request_preprocessor(
    pre: FittedPreprocessor,
    export_dir: Path,
    separators: Mapping[str, str] | None = None,
    settings: PreprocessSettings | None = None,
) -> RankerPreprocessor:
    section, spec = preprocessing_section(pre, export_dir, separators)
    return RankerPreprocessor.from_preprocessing(section, spec, export_dir, settings)


def _category(value: Any) -> str | None:
    return None if value is None else str(value)


def _split(value: Any, separator: str | None) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        assert separator is not None
        return [t for t in value.split(separator) if t]
    return [_category(v) for v in value]


def raw_frame(
    pre: FittedPreprocessor, rows: Sequence[Mapping[str, Any]], separators: Mapping[str, str]
) -> pl.DataFrame:
    """The raw frame the training pipeline would read for ``rows`` (absent keys null, integer
    categories as strings, separator strings split as the reader splits them)."""
    s = pre.schema
    data: dict[str, Any] = {c: [0.0] * len(rows) for c in s.labels}
    dtypes: dict[str, pl.DataType] = {c: pl.Float32() for c in s.labels}
    for c in s.dense:
        data[c] = [None if r.get(c) is None else float(r[c]) for r in rows]
        dtypes[c] = pl.Float64()
    for c in s.sparse:
        data[c] = [_category(r.get(c)) for r in rows]
        dtypes[c] = pl.Utf8()
    for c in s.multi:
        data[c] = [_split(r.get(c), separators.get(c)) for r in rows]
        dtypes[c] = pl.List(pl.Utf8)
    return pl.DataFrame(data, schema=dtypes)


def training_feeds(
    pre: FittedPreprocessor,
    rows: Sequence[Mapping[str, Any]],
    tmp: Path,
    separators: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """What training feeds the model for ``rows``: FittedPreprocessor.transform, written as
    a prepared Parquet file, read back by the batch loader in one batch."""
    prepared = pre.transform(raw_frame(pre, rows, separators or {}))
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"rows-{len(list(tmp.iterdir()))}.parquet"
    prepared.write_parquet(path)
    spec = pre.feature_spec()
    batch = next(iter(ParquetBatchLoader([path], spec, len(rows), prefetch=0)))
    feeds: dict[str, np.ndarray] = {}
    if spec.dense:
        feeds["dense"] = batch.dense.numpy()
    for name in spec.sparse_names:
        jagged = batch.sparse[name]
        feeds[ids_input(name)] = jagged.values().numpy()
        feeds[lengths_input(name)] = jagged.lengths().numpy()
    return feeds


def assert_same_feeds(ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray]) -> None:
    """Same names in the same order, same dtypes, ids equal, dense bit-equal."""
    assert list(ours) == list(theirs)
    for name, expected in theirs.items():
        got = ours[name]
        assert got.dtype == expected.dtype, (name, got.dtype, expected.dtype)
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        if got.dtype == np.float32:
            same = got.view(np.uint32) == expected.view(np.uint32)
            assert same.all(), (name, got[~same][:5], expected[~same][:5])
        else:
            assert np.array_equal(got, expected), (name, got[:20], expected[:20])


def perturb(
    rows: list[dict[str, Any]],
    pre: FittedPreprocessor,
    seed: int,
    *,
    int_features: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rows with the awkward values requests carry: nulls, NaN, +-inf, integers as dense and
    categorical values, unseen categories, absent keys, empty and null lists, null elements."""
    rng = np.random.default_rng(seed)
    s = pre.schema
    out = []
    for row in rows:
        r = {k: row[k] for k in (*s.dense, *s.sparse, *s.multi)}
        for c in s.dense:
            u = rng.random()
            if u < 0.05:
                r[c] = None
            elif u < 0.08:
                r[c] = float(rng.choice([math.nan, math.inf, -math.inf]))
            elif u < 0.12 and r[c] is not None and math.isfinite(r[c]):
                r[c] = round(r[c])  # an int
        for c in s.sparse:
            u = rng.random()
            if u < 0.05:
                r[c] = None
            elif u < 0.1:
                r[c] = f"unseen-{rng.integers(1000)}"
            elif c in int_features and isinstance(r[c], str) and r[c].isdigit():
                r[c] = int(r[c]) if str(int(r[c])) == r[c] else r[c]
        for c in s.multi:
            u = rng.random()
            if u < 0.05:
                r[c] = None
            elif u < 0.1:
                r[c] = []
            elif u < 0.15 and r[c]:
                r[c] = [*r[c][:1], None, "unseen-tag"]
        for c in (*s.dense, *s.sparse, *s.multi):
            if rng.random() < 0.03:
                del r[c]
        out.append(r)
    return out


@pytest.fixture(scope="session")
def social_ranker(
    social: PreparedDataset, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any]:
    """``(export folder, eager model)`` of a multi-task ranker over the social data set."""
    from tests.serving.inference.exports import export_social_ranker

    out = tmp_path_factory.mktemp("social_ranker") / "export"
    return out, export_social_ranker(social, out)


@pytest.fixture(scope="session")
def ctr_ranker(
    ctr: tuple[PreparedDataset, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any]:
    """``(export folder, eager model)`` of a DLRM over the CTR table."""
    from tests.serving.inference.exports import export_ctr_ranker

    out = tmp_path_factory.mktemp("ctr_ranker") / "export"
    return out, export_ctr_ranker(ctr[0], ctr[1], out)


@pytest.fixture(scope="session")
def two_tower(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any, pl.DataFrame]:
    """``(export folder, eager model, retrieval data, raw frame)`` of a social two-tower."""
    from tests.serving.inference.exports import export_social_two_tower

    out = tmp_path_factory.mktemp("two_tower") / "export"
    return (out, *export_social_two_tower(out))
