"""An export on disk: Parquet part files and a JSON manifest, replaced as a whole.

``out_dir`` is written through a hidden sibling folder (:func:`staged_dir`) that is renamed
into place at the end, so readers see the previous export or the new one, never a mix; only an
absent folder, an empty one or a previous export (:data:`MANIFEST` with :data:`FORMAT`) may be
replaced (:func:`check_out_dir`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

FORMAT = "social_events/v1"
MANIFEST = "_manifest.json"
PART_PATTERN = "part-{:05d}.parquet"


class ExportError(ValueError):
    """The export cannot run as asked (bad ``out_dir``, bad parameters); says what to change."""


def check_out_dir(out: Path) -> None:
    """Raises unless ``out`` is absent, an empty folder, or a previous export (replaceable)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"out_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        manifest = out / MANIFEST
        try:
            previous = json.loads(manifest.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or previous.get("format") != FORMAT:
            raise ExportError(
                f"out_dir {out} is not empty and holds no previous export ({MANIFEST} with "
                f"format {FORMAT!r}); refusing to replace it: pass a new or empty folder"
            )


def _replace_dir(staging: Path, out: Path) -> None:
    """Moves ``staging`` to ``out``, replacing a previous export there (two renames)."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A new hidden sibling folder of ``out`` to write the export into: on a normal exit it
    replaces ``out`` (a previous export there included), on an exception it is removed."""
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Writes ``manifest`` as ``folder/_manifest.json`` (sorted keys: the same export gives the
    same bytes)."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


class PartWriter:
    """Cuts a stream of frames into ``part-00000.parquet ...`` of ``rows_per_file`` rows each
    (the last may have fewer; an empty stream writes one empty, typed part) and keeps the sums
    of ``sum_columns`` and the range of ``time_column`` over what it wrote."""

    def __init__(
        self,
        folder: Path,
        rows_per_file: int,
        schema: Mapping[str, pl.DataType],
        *,
        sum_columns: Sequence[str],
        time_column: str,
    ) -> None:
        self.folder = folder
        self.rows_per_file = rows_per_file
        self.schema = dict(schema)
        self.time_column = time_column
        self.pending: list[pl.DataFrame] = []
        self.n_pending = 0
        self.files: list[str] = []
        self.rows_per_part: list[int] = []
        self.sums = dict.fromkeys(sum_columns, 0.0)
        self.rows = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def add(self, frame: pl.DataFrame) -> None:
        """Queues ``frame`` and writes every full part."""
        if not frame.height:
            return
        self.pending.append(frame)
        self.n_pending += frame.height
        while self.n_pending >= self.rows_per_file:
            merged = pl.concat(self.pending)
            self._write(merged.head(self.rows_per_file))
            rest = merged.slice(self.rows_per_file)
            self.pending, self.n_pending = ([rest] if rest.height else []), rest.height

    def close(self) -> None:
        """Writes the last, partial part (or the one empty part of an empty stream)."""
        if self.n_pending or not self.files:
            merged = pl.concat(self.pending) if self.pending else pl.DataFrame(schema=self.schema)
            self._write(merged)
        self.pending, self.n_pending = [], 0

    def means(self) -> dict[str, float]:
        """The mean of each of ``sum_columns`` over the rows written (empty without rows)."""
        return {k: v / self.rows for k, v in self.sums.items()} if self.rows else {}

    def time_range(self) -> tuple[int, int] | None:
        """``(first, last)`` of ``time_column`` over the rows written, or None without rows."""
        if self.first_ts is None or self.last_ts is None:
            return None
        return self.first_ts, self.last_ts

    def parts(self) -> list[dict[str, Any]]:
        """``{"name", "rows"}`` of each part in order (the manifest's ``files``)."""
        return [{"name": n, "rows": r} for n, r in zip(self.files, self.rows_per_part)]

    def _write(self, frame: pl.DataFrame) -> None:
        name = PART_PATTERN.format(len(self.files))
        frame.write_parquet(self.folder / name)
        self.files.append(name)
        self.rows_per_part.append(frame.height)
        self.rows += frame.height
        if frame.height:
            for column in self.sums:
                self.sums[column] += float(frame[column].sum())
            times = frame[self.time_column]
            lo, hi = int(times.min()), int(times.max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
