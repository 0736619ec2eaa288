"""Fitting and applying preprocessing: categorical vocabularies, hashing, dense transforms.

A :class:`FittedPreprocessor` is fitted on the training rows of a raw table (see
:class:`recsys.types.RawSchema`) and maps raw frames to model-ready frames:

* **sparse / multi** columns become integer ids. Id ``0`` means missing (null), ``1`` means
  out-of-vocabulary (unseen in training, or rarer than ``min_freq``, or cut by ``max_vocab``),
  and ids ``2..`` are the vocabulary ordered by descending training frequency, then by value.
  Cardinality is ``2 + vocab size``. Columns listed in ``hash_buckets`` are hashed instead:
  ``2 + fnv1a64(utf8 bytes) % buckets`` (a stable, dependency-free 64-bit FNV-1a), cardinality
  ``2 + buckets``. Multi-valued columns use the same mapping per element; a null list becomes an
  empty list, a null element becomes ``0``. Output dtypes ``Int64`` / ``List(Int64)``.
* **dense** columns: missing values (null, NaN, +-inf) are replaced by ``fill`` (in raw units),
  then, for columns selected by ``log1p``, ``sign(x) * log1p(|x|)`` is applied (sign-preserving,
  so negative counts stay negative and ordered instead of being clipped), then, when
  ``standardize``, ``(x - mean) / std`` with the population mean and standard deviation of the
  *filled and log-transformed training values* (``std == 0`` is stored as ``1``). Output
  ``Float32``.
* labels are cast to ``Float32``; timestamp, aux columns and ``_row`` pass through unchanged.

Artifacts (``save`` / ``load``) live in one folder: ``preprocess.json`` (config, raw schema and
the categorical layout), ``dense_stats.json`` and ``vocab/NNN-<name>.parquet`` (columns
``value``, ``id``, ``count``), so the exact same mapping is applied at inference time::

    pre = FittedPreprocessor.load(artifacts_dir)
    model_frame = pre.transform(raw_frame)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.source import ROW_COLUMN
from recsys.types import DataError, FeatureSpec, RawSchema, SparseFeature

MISSING_ID = 0
OOV_ID = 1
FIRST_VOCAB_ID = 2
HASH_NAME = "fnv1a64"
FORMAT_VERSION = 1

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@dataclass(frozen=True)
class PreprocessConfig:
    """How to fit the preprocessing.

    Attributes:
        min_freq: values seen fewer times in training map to the OOV id ``1``.
        hash_buckets: ``{column: buckets}`` for sparse/multi columns hashed instead of a vocab.
        max_vocab: keep at most this many most frequent values per column (None: no limit).
        fill: replacement for missing dense values, in raw units (before log1p).
        log1p: ``True`` for all dense columns, or the list of columns to log-transform.
        standardize: subtract the training mean and divide by the training std.
        prior_stats: sparse key columns whose point-in-time history (earlier events' count
            and label rates) becomes dense features (:mod:`recsys.data.prior_stats`).
        prior_smoothing: pseudo-events at the train rate in those label rates.
    """

    min_freq: int = 1
    hash_buckets: Mapping[str, int] = field(default_factory=dict)
    max_vocab: int | None = None
    fill: float = 0.0
    log1p: bool | Sequence[str] = False
    standardize: bool = True
    prior_stats: Sequence[str] = ()
    prior_smoothing: float = 5.0

    def __post_init__(self) -> None:
        if self.min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {self.min_freq}")
        if self.max_vocab is not None and self.max_vocab < 0:
            raise ValueError(f"max_vocab must be >= 0 or None, got {self.max_vocab}")
        for name, buckets in self.hash_buckets.items():
            if int(buckets) < 1:
                raise ValueError(f"hash_buckets[{name!r}] must be >= 1, got {buckets}")
        if not np.isfinite(self.fill):
            raise ValueError(f"fill must be finite, got {self.fill}")
        if isinstance(self.prior_stats, str):
            raise ValueError(f"prior_stats must be a list of columns, got {self.prior_stats!r}")
        if not self.prior_smoothing >= 0:
            raise ValueError(f"prior_smoothing must be >= 0, got {self.prior_smoothing}")

    def log1p_columns(self, dense: Sequence[str]) -> list[str]:
        """The dense columns that get ``sign(x) * log1p(|x|)``."""
        if isinstance(self.log1p, bool):
            return list(dense) if self.log1p else []
        unknown = [c for c in self.log1p if c not in dense]
        if unknown:
            raise ValueError(f"log1p names columns that are not dense features: {unknown}")
        return [c for c in dense if c in set(self.log1p)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_freq": self.min_freq,
            "hash_buckets": {k: int(v) for k, v in self.hash_buckets.items()},
            "max_vocab": self.max_vocab,
            "fill": float(self.fill),
            "log1p": self.log1p if isinstance(self.log1p, bool) else list(self.log1p),
            "standardize": self.standardize,
        } | (  # only when used: data sets prepared without them keep their fingerprint
            {"prior_stats": list(self.prior_stats), "prior_smoothing": float(self.prior_smoothing)}
            if self.prior_stats
            else {}
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        log1p = d.get("log1p", False)
        return cls(
            min_freq=int(d.get("min_freq", 1)),
            hash_buckets={k: int(v) for k, v in dict(d.get("hash_buckets", {})).items()},
            max_vocab=d.get("max_vocab"),
            fill=float(d.get("fill", 0.0)),
            log1p=log1p if isinstance(log1p, bool) else tuple(log1p),
            standardize=bool(d.get("standardize", True)),
            prior_stats=tuple(d.get("prior_stats", ())),
            prior_smoothing=float(d.get("prior_smoothing", 5.0)),
        )


@dataclass(frozen=True)
class DenseStats:
    """The fitted transform of one dense column: ``((log1p?)(fill(x)) - mean) / std``."""

    fill: float
    log1p: bool
    mean: float
    std: float

    def to_dict(self) -> dict[str, Any]:
        return {"fill": self.fill, "log1p": self.log1p, "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class CategoricalMap:
    """The fitted id mapping of one sparse or multi column.

    ``vocab`` (kind ``"vocab"``) has columns ``value`` (String), ``id`` (Int64), ``count`` (Int64).
    """

    name: str
    multi: bool
    kind: Literal["vocab", "hash"]
    cardinality: int
    vocab: pl.DataFrame | None = None
    buckets: int | None = None

    def map_values(self, values: pl.Series) -> pl.Series:
        """Maps a flat String series to Int64 ids (null -> 0, unknown -> 1)."""
        if self.kind == "hash":
            assert self.buckets is not None
            return hash_to_ids(values, self.buckets)
        assert self.vocab is not None
        frame = pl.DataFrame({"value": values})
        joined = frame.join(
            self.vocab.select("value", "id"), on="value", how="left", maintain_order="left"
        )
        ids = joined.select(
            pl.when(pl.col("value").is_null())
            .then(pl.lit(MISSING_ID, dtype=pl.Int64))
            .otherwise(pl.col("id").fill_null(OOV_ID))
            .alias(self.name)
        )
        return ids.to_series()


def fnv1a64(values: pl.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Stable 64-bit FNV-1a of each string's UTF-8 bytes, vectorized over positions.

    Returns a ``uint64`` array of the input's length (nulls hash as the empty string; callers
    mask them). Cost is proportional to the total number of bytes.
    """
    arr = values.to_arrow() if isinstance(values, pl.Series) else values
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.large_string())
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.empty(0, dtype=np.uint8)
    )
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")  # longest first: active rows form a prefix
    neg_sorted = -lengths[order]
    starts = offsets[:-1][order]
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    max_len = int(-neg_sorted[0])
    for pos in range(max_len):
        k = int(np.searchsorted(neg_sorted, -pos, side="left"))  # rows with length > pos
        part = h[:k]
        part ^= data[starts[:k] + pos].astype(np.uint64)
        part *= _FNV_PRIME
    out = np.empty(n, dtype=np.uint64)
    out[order] = h
    return out


def hash_to_ids(values: pl.Series, buckets: int) -> pl.Series:
    """Hashed ids ``2 + fnv1a64(v) % buckets``; null -> 0. Returns an Int64 series."""
    h = fnv1a64(values.cast(pl.String))
    ids = (h % np.uint64(buckets)).astype(np.int64) + FIRST_VOCAB_ID
    null = values.is_null().to_numpy()
    ids[null] = MISSING_ID
    return pl.Series(values.name, ids, dtype=pl.Int64)


def _map_list_column(series: pl.Series, cmap: CategoricalMap) -> pl.Series:
    """Maps a List(String) series element-wise; null lists become empty lists."""
    arr = series.cast(pl.List(pl.String)).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.large_list(pa.string()))
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = pl.Series("value", pc.list_flatten(arr), dtype=pl.String)
    ids = cmap.map_values(flat).to_numpy()
    out = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(ids, pa.int64()))
    return pl.Series(series.name, out, dtype=pl.List(pl.Int64))


def dense_expr(name: str, fill: float, log1p: bool) -> pl.Expr:
    """Float64 expression: missing/non-finite -> ``fill``, then optional signed log1p."""
    x = pl.col(name).cast(pl.Float64)
    x = pl.when(x.is_finite()).then(x).otherwise(None).fill_null(fill)
    if log1p:
        x = x.sign() * x.abs().log1p()
    return x.alias(name)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]


@dataclass
class FittedPreprocessor:
    """Fitted vocabularies and dense statistics; maps raw frames to model-ready frames."""

    schema: RawSchema
    config: PreprocessConfig
    dense: dict[str, DenseStats]
    categorical: dict[str, CategoricalMap]

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls, train: pl.LazyFrame, schema: RawSchema, config: PreprocessConfig
    ) -> FittedPreprocessor:
        """Fits on the training rows (a lazy frame with the raw columns); streams the data."""
        categorical_cols = [*schema.sparse, *schema.multi]
        unknown = [c for c in config.hash_buckets if c not in categorical_cols]
        if unknown:
            raise ValueError(f"hash_buckets names columns that are not sparse/multi: {unknown}")
        log_cols = set(config.log1p_columns(schema.dense))

        vocab_cols = [c for c in categorical_cols if c not in config.hash_buckets]
        queries: list[pl.LazyFrame] = []
        for col in vocab_cols:
            values = pl.col(col).explode() if col in schema.multi else pl.col(col)
            counts = (
                train.select(values.cast(pl.String).alias("value"))
                .drop_nulls()
                .group_by("value")
                .agg(pl.len().cast(pl.Int64).alias("count"))
                .filter(pl.col("count") >= config.min_freq)
                .sort(["count", "value"], descending=[True, False])
            )
            if config.max_vocab is not None:
                counts = counts.head(config.max_vocab)
            queries.append(counts)
        if schema.dense:
            exprs: list[pl.Expr] = []
            for col in schema.dense:
                x = dense_expr(col, config.fill, col in log_cols)
                exprs += [x.mean().alias(f"{col}.mean"), x.std(ddof=0).alias(f"{col}.std")]
            queries.append(train.select(exprs))
        results = pl.collect_all(queries, engine="streaming") if queries else []

        categorical: dict[str, CategoricalMap] = {}
        for col, counts in zip(vocab_cols, results):
            vocab = counts.with_columns(
                (pl.int_range(pl.len(), dtype=pl.Int64) + FIRST_VOCAB_ID).alias("id")
            ).select("value", "id", "count")
            categorical[col] = CategoricalMap(
                col, col in schema.multi, "vocab", FIRST_VOCAB_ID + vocab.height, vocab=vocab
            )
        for col, buckets in config.hash_buckets.items():
            categorical[col] = CategoricalMap(
                col, col in schema.multi, "hash", FIRST_VOCAB_ID + int(buckets), buckets=buckets
            )
        categorical = {c: categorical[c] for c in categorical_cols}

        dense: dict[str, DenseStats] = {}
        if schema.dense:
            row = results[-1].row(0, named=True)
            for col in schema.dense:
                mean, std = row[f"{col}.mean"], row[f"{col}.std"]
                if not config.standardize or mean is None or not np.isfinite(mean):
                    mean = 0.0
                if not config.standardize or std is None or not np.isfinite(std) or std <= 0:
                    std = 1.0
                dense[col] = DenseStats(config.fill, col in log_cols, float(mean), float(std))
        return cls(schema, config, dense, categorical)

    # ---------------------------------------------------------------- applying
    def feature_spec(self) -> FeatureSpec:
        """The model-facing spec: dense names, sparse (single then multi) with cardinalities."""
        sparse = tuple(
            SparseFeature(name=c, cardinality=m.cardinality, multi_hot=m.multi)
            for c, m in self.categorical.items()
        )
        return FeatureSpec(
            dense=self.schema.dense,
            sparse=sparse,
            labels=self.schema.labels,
            timestamp=self.schema.timestamp,
        )

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Maps a raw frame to the prepared layout.

        Required columns: every dense, sparse and multi feature (a missing one raises
        :class:`DataError` naming it). Labels, timestamp, aux and ``_row`` are optional and
        kept when present; other columns are dropped. Output order: labels, dense, sparse,
        multi, timestamp, aux, ``_row``. Labels ``Float32``, dense ``Float32``, sparse ``Int64``,
        multi ``List(Int64)``.
        """
        s = self.schema
        for col in [*s.dense, *s.sparse, *s.multi]:
            if col not in frame.columns:
                raise DataError(
                    f"required column is missing from the frame (has {frame.columns})", field=col
                )
        out: list[pl.Series] = []
        for col in s.labels:
            if col in frame.columns:
                out.append(_cast(frame[col], pl.Float32))
        if s.dense:
            dense_exprs = []
            for col in s.dense:
                st = self.dense[col]
                _cast(frame[col], pl.Float64)  # clear error on a non-numeric column
                x = dense_expr(col, st.fill, st.log1p)
                dense_exprs.append(((x - st.mean) / st.std).cast(pl.Float32).alias(col))
            out.extend(frame.select(dense_exprs).get_columns())
        for col in s.sparse:
            values = _cast(frame[col], pl.String)
            out.append(self.categorical[col].map_values(values).alias(col))
        for col in s.multi:
            values = _cast(frame[col], pl.List(pl.String))
            out.append(_map_list_column(values, self.categorical[col]))
        passthrough = [*([s.timestamp] if s.timestamp else []), *s.aux, ROW_COLUMN]
        out.extend(frame[c] for c in passthrough if c in frame.columns)
        return pl.DataFrame(out)

    # --------------------------------------------------------------- artifacts
    def save(self, artifacts_dir: Path) -> None:
        """Writes ``preprocess.json``, ``dense_stats.json`` and ``vocab/*.parquet``."""
        artifacts_dir = Path(artifacts_dir)
        (artifacts_dir / "vocab").mkdir(parents=True, exist_ok=True)
        layout: dict[str, Any] = {}
        for i, (col, m) in enumerate(self.categorical.items()):
            entry: dict[str, Any] = {"kind": m.kind, "multi": m.multi, "cardinality": m.cardinality}
            if m.kind == "vocab":
                assert m.vocab is not None
                rel = f"vocab/{i:03d}-{_safe_name(col)}.parquet"
                m.vocab.write_parquet(artifacts_dir / rel)
                entry |= {"file": rel, "vocab_size": m.vocab.height}
            else:
                entry |= {"buckets": m.buckets, "hash": HASH_NAME}
            layout[col] = entry
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "schema": self.schema.to_dict(),
            "categorical": layout,
            "id_convention": {"missing": MISSING_ID, "oov": OOV_ID, "first_vocab": FIRST_VOCAB_ID},
        }
        _write_json(artifacts_dir / "preprocess.json", meta)
        _write_json(
            artifacts_dir / "dense_stats.json", {c: st.to_dict() for c, st in self.dense.items()}
        )

    @classmethod
    def load(cls, artifacts_dir: Path) -> FittedPreprocessor:
        """Reads what :meth:`save` wrote; raises ``FileNotFoundError`` naming a missing file."""
        artifacts_dir = Path(artifacts_dir)
        meta_path = artifacts_dir / "preprocess.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no preprocess.json in {artifacts_dir}")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"unsupported artifacts format {meta.get('format_version')!r}", path=str(meta_path)
            )
        schema = RawSchema.from_dict(meta["schema"])
        config = PreprocessConfig.from_dict(meta["config"])
        stats = json.loads((artifacts_dir / "dense_stats.json").read_text())
        dense = {c: DenseStats(**stats[c]) for c in schema.dense}
        categorical: dict[str, CategoricalMap] = {}
        for col, e in meta["categorical"].items():
            if e["kind"] == "vocab":
                vocab = pl.read_parquet(artifacts_dir / e["file"])
                categorical[col] = CategoricalMap(
                    col, e["multi"], "vocab", e["cardinality"], vocab=vocab
                )
            elif e["kind"] == "hash" and e.get("hash") == HASH_NAME:
                categorical[col] = CategoricalMap(
                    col, e["multi"], "hash", e["cardinality"], buckets=e["buckets"]
                )
            else:
                raise DataError(f"unknown categorical mapping {e}", path=str(meta_path), field=col)
        return cls(schema, config, dense, categorical)


def _cast(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Casts strictly; a failure raises :class:`DataError` naming the column."""
    if series.dtype == dtype:
        return series
    try:
        return series.cast(dtype, strict=True)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise DataError(f"cannot cast {series.dtype} to {dtype}: {exc}", field=series.name) from exc


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
    tmp.replace(path)
