"""Reader of the Criteo Display Advertising Challenge TSV (Kaggle ``train.txt`` format).

Each line is ``label \\t I1 .. I13 \\t C1 .. C26``: a 0/1 click label, 13 integer features
(possibly negative, empty = missing) and 26 categorical features (32-bit hashes written as
8 hex digits, empty = missing). There is no header. Copies whose trailing empty fields were
stripped (fewer than 40 fields) are padded with empty fields; more than 40 fields is a bad
row. ``.gz`` files are decompressed on the fly.

The file is streamed in byte blocks and parsed with Polars expressions, so the 45M-row
``train.txt`` reads in bounded memory.

Example::

    reader = CriteoReader("train.txt", on_bad_rows="skip")
    for frame in reader.iter_chunks():  # label, I1..I13, C1..C26, _row
        ...
    print(reader.report.to_dict())
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from recsys.data.readers._lines import (
    DEFAULT_CHUNK_BYTES,
    LINE,
    Check,
    RowCounter,
    apply_checks,
    empty_to_null,
    iter_file_lines,
    resolve_paths,
    split_fields,
)
from recsys.data.source import ROW_COLUMN, ReadReport, check_policy
from recsys.types import RawSchema

LABEL = "label"
DENSE = tuple(f"I{i}" for i in range(1, 14))
SPARSE = tuple(f"C{i}" for i in range(1, 27))
NUM_FIELDS = 1 + len(DENSE) + len(SPARSE)
SCHEMA = RawSchema(labels=(LABEL,), dense=DENSE, sparse=SPARSE)


class CriteoReader:
    """Streams Criteo TSV files as frames of ``label``, ``I1..I13``, ``C1..C26`` and ``_row``.

    Args:
        paths: one file, a glob pattern, or a list of them (read in the given order).
        on_bad_rows: ``"error"`` raises :class:`~recsys.types.DataError` naming file, line,
            field and value; ``"skip"`` drops the row and records it in ``report``.
        chunk_bytes: bytes read per block (one yielded frame per block).

    Dtypes: ``label`` Float32 in {0, 1}; ``I*`` Float64 (null = missing); ``C*`` Utf8
    (null = missing); ``_row`` Int64, 0-based position among the non-blank lines of all
    files (bad rows keep their position, so skipping leaves gaps).
    """

    name = "criteo"

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        on_bad_rows: str = "error",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.paths = resolve_paths(paths)
        self.on_bad_rows = check_policy(on_bad_rows)
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        self.chunk_bytes = chunk_bytes
        self.schema = SCHEMA
        self.report = ReadReport()

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        """Yields one frame per byte block, in file order. Resets ``report`` first."""
        self.report = ReadReport()
        counter = RowCounter()
        for path in self.paths:
            for lines in iter_file_lines(path, chunk_bytes=self.chunk_bytes, encoding="utf-8"):
                lines = counter.number(lines)
                frame = self._parse(lines, path)
                self.report.rows_read += frame.height
                if frame.height:
                    yield frame

    def _parse(self, lines: pl.DataFrame, path: Path) -> pl.DataFrame:
        names = [LABEL, *DENSE, *SPARSE]
        raw = lines.with_columns(split_fields(pl.col(LINE), "\t", names))
        checks = [
            Check(
                field=None,
                bad=pl.col("_extra").is_not_null(),
                value=pl.col(LINE).str.count_matches("\t", literal=True) + 1,
                message=f"too many tab-separated fields (expected at most {NUM_FIELDS})",
            ),
            Check(
                field=LABEL,
                bad=pl.col(LABEL).is_null() | ~pl.col(LABEL).is_in(["0", "1"]),
                value=pl.col(LABEL),
                message="label must be 0 or 1",
            ),
        ]
        checks.extend(
            Check(
                field=name,
                bad=(pl.col(name).str.len_bytes() > 0)
                & pl.col(name).cast(pl.Int64, strict=False).is_null(),
                value=pl.col(name),
                message="not an integer",
            )
            for name in DENSE
        )
        good = apply_checks(raw, checks, path=path, policy=self.on_bad_rows, report=self.report)
        return good.select(
            pl.col(LABEL).cast(pl.Float32),
            *[pl.col(n).cast(pl.Int64, strict=False).cast(pl.Float64) for n in DENSE],
            *[empty_to_null(pl.col(n)).alias(n) for n in SPARSE],
            pl.col(ROW_COLUMN),
        )

    def describe(self) -> dict[str, object]:
        """JSON-able facts: format, paths, policy, block size, schema and the read report."""
        return {
            "reader": self.name,
            "format": "criteo-tsv",
            "paths": [str(p) for p in self.paths],
            "on_bad_rows": self.on_bad_rows,
            "chunk_bytes": self.chunk_bytes,
            "schema": self.schema.to_dict(),
            "report": self.report.to_dict(),
        }
