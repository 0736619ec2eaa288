"""Streaming text files as Polars frames of lines, and vectorized bad-row checks.

Shared by the readers of text formats. A file is read in fixed-size byte blocks cut at the
last newline, decoded once per block, and split into lines by Polars (no Python object per
line). Each yielded frame has ``_line`` (Utf8, without the line terminator), ``_lineno``
(Int64, 1-based line number in the file) and, once numbered by :class:`RowCounter`, ``_row``.

Blank lines (empty, or only spaces) are not rows: they are dropped silently and take no
``_row`` position, but still count for line numbers.

Checks are expressed as Polars expressions (:class:`Check`); :func:`apply_checks` evaluates
all of them at once and loops in Python only over the bad rows, to build error messages.
"""

from __future__ import annotations

import glob
import gzip
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from recsys.data.source import MAX_REPORTED_EXAMPLES, ROW_COLUMN, BadRowPolicy, ReadReport
from recsys.types import DataError

LINE = "_line"
LINENO = "_lineno"
DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024  # measured: larger blocks are slower and use more memory
_GLOB_CHARS = frozenset("*?[")
_UTF8_BOM = b"\xef\xbb\xbf"


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def resolve_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Turns a path, a glob pattern or a list of them into existing files, in order.

    Glob patterns expand in sorted order. Raises ``FileNotFoundError`` naming what is missing.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise ValueError("no input paths given")
    out: list[Path] = []
    for item in items:
        text = str(item)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"glob pattern {text!r} matches no files")
            out.extend(Path(m) for m in matches)
            continue
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} does not exist or is not a file")
        out.append(path)
    return out


def _open_binary(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _decode(data: bytes, encoding: str, path: Path, first_line: int) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise DataError(
            f"cannot decode bytes as {encoding} ({exc.reason}); set the reader's encoding",
            path=str(path),
            line=line,
        ) from exc


def _lines_frame(text: str, first_line: int) -> pl.DataFrame:
    lines = pl.Series(LINE, [text]).str.split("\n").explode()
    if text.endswith("\n"):
        lines = lines.head(len(lines) - 1)
    frame = pl.DataFrame({LINE: lines.str.strip_suffix("\r")})
    frame = frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + first_line).alias(LINENO))
    return frame.filter(pl.col(LINE).str.strip_chars(" ").str.len_bytes() > 0)


def iter_file_lines(
    path: Path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, encoding: str = "utf-8"
) -> Iterator[pl.DataFrame]:
    """Yields the non-blank lines of one text file (``.gz`` is decompressed) in blocks.

    Each frame has ``_line`` (Utf8) and ``_lineno`` (Int64, 1-based). A line longer than
    ``chunk_bytes`` is kept whole (the block grows until its newline).
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    first_line = 1
    carry = b""
    with _open_binary(path) as fh:
        while True:
            block = fh.read(chunk_bytes)
            if block:
                data = carry + block
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    continue
                data, carry = data[: cut + 1], data[cut + 1 :]
            else:
                data, carry = carry, b""
                if not data:
                    return
            if first_line == 1 and data.startswith(_UTF8_BOM) and _is_utf8(encoding):
                data = data[len(_UTF8_BOM) :]
            text = _decode(data, encoding, path, first_line)
            frame = _lines_frame(text, first_line)
            first_line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            if frame.height:
                yield frame


class RowCounter:
    """Gives consecutive ``_row`` positions to frames across files."""

    def __init__(self) -> None:
        self.next_row = 0

    def number(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Adds ``_row`` (Int64) continuing from the previous frame."""
        start = self.next_row
        self.next_row += frame.height
        return frame.with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) + start).alias(ROW_COLUMN)
        )


def empty_to_null(expr: pl.Expr) -> pl.Expr:
    """A Utf8 expression with empty strings replaced by null."""
    return pl.when(expr.str.len_bytes() == 0).then(None).otherwise(expr)


def split_fields(line: pl.Expr, separator: str, names: Sequence[str]) -> list[pl.Expr]:
    """Splits a line into ``names`` (missing trailing fields are null) plus ``_extra``.

    ``_extra`` is non-null exactly when the line has more than ``len(names)`` fields.
    """
    parts = line.str.splitn(separator, len(names) + 1)
    exprs = [parts.struct.field(f"field_{i}").alias(name) for i, name in enumerate(names)]
    exprs.append(parts.struct.field(f"field_{len(names)}").alias("_extra"))
    return exprs


def _shorten(value: str | None, limit: int = 200) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "..."


@dataclass(frozen=True)
class Check:
    """One validation rule: rows where ``bad`` is true are bad for ``field``.

    ``value`` gives the offending raw value (any dtype, shown as text) for the message.
    """

    field: str | None
    bad: pl.Expr
    value: pl.Expr
    message: str


def apply_checks(
    frame: pl.DataFrame,
    checks: Sequence[Check],
    *,
    path: Path | str,
    policy: BadRowPolicy,
    report: ReadReport,
    line_column: str = LINENO,
) -> pl.DataFrame:
    """Evaluates ``checks`` on ``frame`` and applies the bad-row policy.

    With ``"error"`` raises :class:`DataError` for the first bad row (file order), naming the
    first failing check. With ``"skip"`` drops bad rows and records them in ``report``.
    Returns the frame without bad rows.
    """
    if not checks or frame.height == 0:
        return frame
    flags = [c.bad.fill_null(False).alias(f"_bad{i}") for i, c in enumerate(checks)]
    flagged = frame.with_columns(flags)
    flag_names = [f"_bad{i}" for i in range(len(checks))]
    any_bad = pl.any_horizontal(flag_names)
    if not flagged.select(any_bad.any()).item():
        return frame
    bad = flagged.filter(any_bad)
    n_bad = bad.height
    room = max(MAX_REPORTED_EXAMPLES - len(report.examples), 0)
    shown = 1 if policy == "error" else min(n_bad, room)
    detail = bad.head(shown).select(
        pl.col(line_column),
        *flag_names,
        *[c.value.cast(pl.Utf8).alias(f"_val{i}") for i, c in enumerate(checks)],
    )
    for row in detail.iter_rows(named=True):
        i = next(k for k in range(len(checks)) if row[f"_bad{k}"])
        check = checks[i]
        error = DataError(
            check.message,
            path=str(path),
            line=int(row[line_column]),
            field=check.field,
            value=_shorten(row[f"_val{i}"]),
        )
        if policy == "error":
            raise error
        report.skip(error)
    report.rows_skipped += n_bad - shown
    return flagged.filter(~any_bad).drop(flag_names)
