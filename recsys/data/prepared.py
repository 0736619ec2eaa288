"""The ``prepare()`` pipeline: raw source -> split, preprocessed Parquet + manifest.

Layout of ``out_dir``::

    raw/part-NNNNN.parquet       the source as read (canonical dtypes, ``_row``)
    artifacts/                   preprocess.json, dense_stats.json, vocab/*.parquet
    train/part-NNNNN.parquet     labels Float32, dense Float32, sparse Int64,
    valid/...                    multi List(Int64), timestamp, aux, _row
    test/...
    manifest.json                written last, atomically: its presence means "complete"

Steps: (1) stream the source's chunks to ``raw/`` in parts of bounded size; (2) rank rows by
the split key (:mod:`recsys.data.split`) and find the two boundaries; (3) fit the
preprocessing on the train rows only (streaming Polars queries); (4) per raw part, transform
with the *saved and reloaded* artifacts and write each split's rows; (5) write the manifest.

Example::

    ds = prepare(source, Path("data/prepared/criteo"), PreprocessConfig(log1p=True),
                 SplitConfig(kind="temporal"))
    for batch in ds.loader("train", batch_size=2048, shuffle=True):
        ...
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data.loader import ParquetBatchLoader
from recsys.data.preprocess import FittedPreprocessor, PreprocessConfig
from recsys.data.prior_stats import add_prior_stats
from recsys.data.progress import Progress
from recsys.data.source import ROW_COLUMN, RawSource
from recsys.data.split import (
    SPLITS,
    SplitConfig,
    add_split_key,
    compute_boundaries,
    key_columns,
)
from recsys.types import DataError, FeatureSpec, RawSchema

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
ROWS_PER_PART = 1 << 20
ROW_GROUP_SIZE = 1 << 17
_OWNED = ("raw", "artifacts", *SPLITS)


@dataclass
class PreparedDataset:
    """A prepared data set on disk: ``root`` holds the splits, artifacts and manifest."""

    root: Path
    spec: FeatureSpec
    manifest: dict[str, Any]

    def _split(self, split: str) -> dict[str, Any]:
        try:
            return self.manifest["splits"][split]
        except KeyError:
            known = list(self.manifest["splits"])
            raise KeyError(f"unknown split {split!r}; known: {known}") from None

    def files(self, split: str) -> list[Path]:
        """The Parquet part files of ``split``, in order."""
        return [self.root / f for f in self._split(split)["files"]]

    def num_rows(self, split: str) -> int:
        return int(self._split(split)["rows"])

    def loader(self, split: str, batch_size: int, **options: Any) -> ParquetBatchLoader:
        """A batch loader over ``split``; ``options`` are :class:`ParquetBatchLoader`'s keyword
        arguments (``shuffle``, ``seed``, ``drop_last``, ``prefetch``, ``extras``,
        ``shuffle_buffer``) with its defaults."""
        return ParquetBatchLoader(self.files(split), self.spec, batch_size, **options)

    def read_frame(self, split: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The whole split as one frame (for evaluation and tests; loads it in memory)."""
        lf = pl.scan_parquet(self.files(split))
        if columns is not None:
            lf = lf.select(list(columns))
        return lf.collect()

    def preprocessor(self) -> FittedPreprocessor:
        """The fitted preprocessing, for applying the same mapping to new raw rows."""
        return FittedPreprocessor.load(self.root / "artifacts")

    def annotate(self, key: str, value: Any) -> None:
        """Adds ``key`` to the manifest (facts measured after preparing, such as the synthetic
        generator's best achievable AUC), rewriting it atomically. Core keys cannot be changed."""
        if key in _CORE_KEYS:
            raise ValueError(f"manifest key {key!r} is written by prepare() and cannot be changed")
        manifest = {**self.manifest, key: value}
        _write_manifest(self.root / MANIFEST, manifest)
        self.manifest = manifest


_CORE_KEYS = frozenset(
    (
        "fingerprint",
        "source",
        "raw_schema",
        "feature_spec",
        "splits",
        "read_report",
        "preprocess",
        "split",
        "created_at",
    )
)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Writes the manifest to a temporary file, syncs it, then renames it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_prepared(out_dir: Path) -> PreparedDataset:
    """Opens a prepared data set; raises ``FileNotFoundError`` if it has no manifest."""
    root = Path(out_dir)
    path = root / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no {MANIFEST} in {root}: the data set was never prepared there, or prepare() "
            "did not finish; run prepare() again"
        )
    manifest = json.loads(path.read_text())
    return PreparedDataset(root, FeatureSpec.from_dict(manifest["feature_spec"]), manifest)


def default_fingerprint(source: RawSource, preprocess: PreprocessConfig, split: SplitConfig) -> str:
    """sha256 of the source description, raw schema and both configs."""
    payload = {
        "source": source.describe(),
        "raw_schema": source.schema.to_dict(),
        "preprocess": preprocess.to_dict(),
        "split": split.to_dict(),
        "manifest_version": MANIFEST_VERSION,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(
    source: RawSource,
    out_dir: Path,
    preprocess: PreprocessConfig,
    split: SplitConfig,
    *,
    fingerprint: str | None = None,
    overwrite: bool = False,
    rows_per_part: int = ROWS_PER_PART,
    row_group_size: int = ROW_GROUP_SIZE,
) -> PreparedDataset:
    """Reads ``source``, splits, fits preprocessing on train, writes Parquet and a manifest.

    If ``out_dir/manifest.json`` exists with the same fingerprint (default:
    :func:`default_fingerprint`) and not ``overwrite``, the existing data set is returned
    without reading the source. Otherwise the folders this function owns (``raw``,
    ``artifacts``, ``train``, ``valid``, ``test``) and the manifest are removed and rebuilt;
    other files in ``out_dir`` are left alone. Memory is bounded by ``rows_per_part`` rows
    plus the split-key columns (8-16 bytes per row) and the vocabularies.
    """
    out_dir = Path(out_dir)
    if rows_per_part < 1 or row_group_size < 1:
        raise ValueError("rows_per_part and row_group_size must be >= 1")
    if fingerprint is None:
        fingerprint = default_fingerprint(source, preprocess, split)
    # processes preparing the same folder at once (the trials of a sweep) take turns: the
    # first one writes it, the others find it done
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare_locked(
            source,
            out_dir,
            preprocess,
            split,
            fingerprint,
            overwrite,
            rows_per_part,
            row_group_size,
        )


def _prepare_locked(
    source: RawSource,
    out_dir: Path,
    preprocess: PreprocessConfig,
    split: SplitConfig,
    fingerprint: str,
    overwrite: bool,
    rows_per_part: int,
    row_group_size: int,
) -> PreparedDataset:
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists() and not overwrite:
        try:
            existing = load_prepared(out_dir)
        except (json.JSONDecodeError, KeyError, TypeError):
            existing = None
        if existing is not None and existing.manifest.get("fingerprint") == fingerprint:
            return existing
    _clear(out_dir)

    schema = source.schema
    raw_files = _write_raw(source, out_dir / "raw", split, rows_per_part, row_group_size)
    raw = pl.scan_parquet(raw_files)
    bounds = compute_boundaries(raw, key_columns(schema, split), split)
    if preprocess.prior_stats:
        train_rates = (
            raw.filter(bounds.predicate("train"))
            .select([pl.col(c).cast(pl.Float64).mean() for c in schema.labels])
            .collect()
            .row(0, named=True)
        )
        schema = add_prior_stats(
            raw_files,
            schema,
            list(preprocess.prior_stats),
            {c: float(v or 0.0) for c, v in train_rates.items()},
            preprocess.prior_smoothing,
            row_group_size,
        )
        raw = pl.scan_parquet(raw_files)

    artifacts = out_dir / "artifacts"
    FittedPreprocessor.fit(raw.filter(bounds.predicate("train")), schema, preprocess).save(
        artifacts
    )
    pre = FittedPreprocessor.load(artifacts)  # pass 2 uses exactly what inference will load

    files: dict[str, list[str]] = {s: [] for s in SPLITS}
    rows = dict.fromkeys(SPLITS, 0)
    label_sums: dict[str, dict[str, float]] = {s: dict.fromkeys(schema.labels, 0.0) for s in SPLITS}
    empty: pl.DataFrame | None = None
    for part, raw_file in enumerate(raw_files):
        frame = pl.read_parquet(raw_file)
        assign = frame.select(bounds.assign()).to_series()
        prepared = pre.transform(frame)
        if empty is None:
            empty = prepared.head(0)
        for code, name in enumerate(SPLITS):
            sub = prepared.filter(assign == code)
            if sub.height == 0:
                continue
            rel = f"{name}/part-{part:05d}.parquet"
            (out_dir / name).mkdir(parents=True, exist_ok=True)
            sub.write_parquet(out_dir / rel, row_group_size=row_group_size)
            files[name].append(rel)
            rows[name] += sub.height
            sums = sub.select([pl.col(c).cast(pl.Float64).sum() for c in schema.labels])
            for c in schema.labels:
                label_sums[name][c] += float(sums[c].item())
    for name in SPLITS:  # an empty split still gets one file, so its schema is readable
        if not files[name] and empty is not None:
            rel = f"{name}/part-00000.parquet"
            (out_dir / name).mkdir(parents=True, exist_ok=True)
            empty.write_parquet(out_dir / rel)
            files[name].append(rel)
    if tuple(rows[s] for s in SPLITS) != bounds.sizes:
        raise RuntimeError(f"split sizes {rows} differ from the planned {bounds.sizes}")

    spec = pre.feature_spec()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "fingerprint": fingerprint,
        "source": source.describe(),
        "raw_schema": schema.to_dict(),
        "feature_spec": spec.to_dict(),
        "splits": {
            s: {
                "rows": rows[s],
                "positive_rate": {
                    c: (label_sums[s][c] / rows[s] if rows[s] else None) for c in schema.labels
                },
                "files": files[s],
            }
            for s in SPLITS
        },
        "read_report": source.report.to_dict(),
        "preprocess": preprocess.to_dict(),
        "split": split.to_dict(),
        "raw_files": [str(p.relative_to(out_dir)) for p in raw_files],
        "row_group_size": row_group_size,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_manifest(manifest_path, manifest)
    return PreparedDataset(out_dir, spec, manifest)


def _clear(out_dir: Path) -> None:
    """Removes the manifest first (so nothing looks complete), then the owned folders."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST, MANIFEST + ".tmp"):
        (out_dir / name).unlink(missing_ok=True)
    for name in _OWNED:
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)


def _canonical(chunk: pl.DataFrame, schema: RawSchema, source_name: str) -> pl.DataFrame:
    """Selects ``schema.columns() + _row`` with canonical dtypes; clear errors otherwise."""
    wanted = [*schema.columns(), ROW_COLUMN]
    for col in wanted:
        if col not in chunk.columns:
            raise DataError(
                f"source {source_name!r} yielded a chunk without this column", field=col
            )
    dtypes: dict[str, pl.DataType] = {ROW_COLUMN: pl.Int64()}
    dtypes |= {c: pl.Float32() for c in schema.labels}
    dtypes |= {c: pl.Float64() for c in schema.dense}
    dtypes |= {c: pl.String() for c in schema.sparse}
    dtypes |= {c: pl.List(pl.String) for c in schema.multi}
    if schema.timestamp is not None:
        dtypes[schema.timestamp] = pl.Int64()
    out = []
    for col in wanted:
        s = chunk[col]
        if col in dtypes and s.dtype != dtypes[col]:
            try:
                s = s.cast(dtypes[col], strict=True)
            except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
                raise DataError(
                    f"source {source_name!r}: cannot cast {s.dtype} to {dtypes[col]}: {exc}",
                    field=col,
                ) from exc
        out.append(s)
    frame = pl.DataFrame(out)
    must_have = [*schema.labels, ROW_COLUMN, *([schema.timestamp] if schema.timestamp else [])]
    for col in must_have:
        if frame[col].null_count():
            row = frame.filter(pl.col(col).is_null())[ROW_COLUMN].head(1).to_list()
            raise DataError(
                f"source {source_name!r}: null value in a required column (first at _row {row})",
                field=col,
            )
    return frame


def _write_raw(
    source: RawSource,
    raw_dir: Path,
    split: SplitConfig,
    rows_per_part: int,
    row_group_size: int,
) -> list[Path]:
    """Pass 1: streams chunks into ``raw/part-NNNNN.parquet`` of about ``rows_per_part`` rows.

    Checks that ``_row`` strictly increases across chunks (source order, unique positions).
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    buffer: list[pl.DataFrame] = []
    buffered = 0
    last_row: int | None = None

    def flush() -> None:
        nonlocal buffer, buffered
        if not buffered:
            return
        frame = pl.concat(buffer, how="vertical_relaxed")
        path = raw_dir / f"part-{len(files):05d}.parquet"
        frame.write_parquet(path, row_group_size=row_group_size)
        files.append(path)
        buffer, buffered = [], 0

    progress = Progress(None, f"prepare {source.name}", unit="rows")
    for chunk in source.iter_chunks():
        if chunk.height == 0:
            continue
        progress.update(chunk.height)
        frame = _canonical(chunk, source.schema, source.name)
        rows = frame[ROW_COLUMN]
        first = int(rows[0])
        if (last_row is not None and first <= last_row) or (
            frame.height > 1 and not bool((rows.diff().drop_nulls() > 0).all())
        ):
            raise DataError(
                f"source {source.name!r}: _row must strictly increase in source order "
                f"(chunk starting at _row {first} after _row {last_row})",
                field=ROW_COLUMN,
            )
        last_row = int(rows[-1])
        frame = add_split_key(frame, split)
        start = 0
        while start < frame.height:  # cut so parts hold at most rows_per_part rows
            take = min(rows_per_part - buffered, frame.height - start)
            buffer.append(frame.slice(start, take))
            buffered += take
            start += take
            if buffered >= rows_per_part:
                flush()
    flush()
    progress.close()
    if not files:
        paths = getattr(source, "paths", None)
        where = f" (read {', '.join(str(p) for p in paths)})" if paths else ""
        skipped = source.report.rows_skipped if hasattr(source, "report") else 0
        why = f"; {skipped} bad rows skipped" if skipped else "; a header-only or empty file?"
        raise DataError(f"source {source.name!r} produced no rows{where}{why}")
    return files
