"""A generic CTR table reader described only by configuration (CSV, TSV or Parquet).

A new data set in a flat table needs a config file naming its columns' roles, not code::

    reader = CtrTableReader(
        "data/clicks/*.parquet",
        labels=["click"], dense=["price"], sparse=["user", "ad"],
        multi={"tags": "|"}, timestamp="ts",
    )

CSV and TSV stream in byte blocks (line numbers in errors are exact, assuming one line per
record: quoted values may hold separators but not newlines). Parquet streams by record
batch; for Parquet, the "line" in errors is the 1-based row number in the file.

Conversions (a value that fails is a bad row, handled by ``on_bad_rows``): labels to
Float32 in {0, 1} (missing is bad); dense to Float64 (empty = null, NaN = null, non-numeric
is bad); sparse to Utf8 (empty = null); multi to List(Utf8) by splitting on the column's
separator (empty or null = empty list, empty tokens dropped; Parquet list columns are cast);
timestamp to Int64 unix seconds: by default from integers (unix seconds) or ISO-8601 strings
(naive times are UTC); with ``timestamp_format`` from ``"unix_ms"`` integers or any strptime
format (``"%y%m%d%H"``: Avazu's ``hour``, 14102100 = 2014-10-21 00:00 UTC); missing, unparsable
or implausible (outside ``timestamp_years``, e.g. a YYMMDDHH value read as unix seconds, which
lands in 1970) is bad; aux columns pass through unchanged.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from recsys.data.readers._lines import (
    DEFAULT_CHUNK_BYTES,
    LINE,
    LINENO,
    Check,
    RowCounter,
    apply_checks,
    iter_file_lines,
    resolve_paths,
)
from recsys.data.source import ROW_COLUMN, ReadReport, check_policy
from recsys.types import DataError, RawSchema

FORMATS = ("csv", "tsv", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
_ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_QUOTED = r'"[^"]*"'


def infer_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from a file name (a trailing ``.gz`` is ignored)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ValueError(
            f"cannot infer the format of {path} from its suffix; pass format= one of {FORMATS} "
            f"(known suffixes: {sorted(_SUFFIXES)})"
        )
    if fmt == "parquet" and path.suffix.lower() == ".gz":
        raise ValueError(f"{path}: gzip-compressed Parquet is not supported")
    return fmt


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, (pl.Enum, pl.Categorical))


def _number(name: str, dtype: pl.DataType) -> pl.Expr:
    """Float64 value of a column of any dtype (null where not numeric)."""
    col = pl.col(name)
    if _is_text(dtype):
        return col.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
    if dtype.is_numeric() or dtype == pl.Boolean:
        return col.cast(pl.Float64)
    return pl.lit(None, dtype=pl.Float64)


def _epoch_seconds(name: str, dtype: pl.DataType, fmt: str | None = None) -> pl.Expr:
    """Int64 unix seconds from integers, integral floats, dates, datetimes or ISO strings;
    ``fmt``: ``"unix_ms"`` (integer milliseconds) or a strptime format of the text form."""
    col = pl.col(name)
    if fmt == "unix_ms":
        return _epoch_seconds(name, dtype) // 1000
    if fmt is not None:
        text = col.cast(pl.Utf8).str.strip_chars()
        if "%H" in fmt and "%M" not in fmt:  # chrono parses an hour only with its minutes
            text, fmt = text + "00", fmt + "%M"
        return text.str.to_datetime(fmt, strict=False, time_unit="us").dt.epoch("s")
    if isinstance(dtype, pl.Datetime):
        return col.dt.epoch("s")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.epoch("s")
    if dtype.is_integer():
        return col.cast(pl.Int64)
    if dtype.is_float():
        return pl.when(col == col.floor()).then(col.cast(pl.Int64, strict=False))
    if not _is_text(dtype):
        return pl.lit(None, dtype=pl.Int64)
    text = col.cast(pl.Utf8).str.strip_chars()
    candidates = [text.cast(pl.Int64, strict=False)]
    candidates.extend(
        text.str.to_datetime(f, strict=False, time_unit="us").dt.epoch("s")
        for f in (*_NAIVE_FORMATS, *_ZONED_FORMATS)
    )
    candidates.append(
        text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.epoch("s")
    )
    return pl.coalesce(candidates)


def _multi(name: str, dtype: pl.DataType, separator: str) -> pl.Expr:
    col = pl.col(name)
    if isinstance(dtype, (pl.List, pl.Array)):
        values = col.cast(pl.List(pl.Utf8))
    else:
        values = col.cast(pl.Utf8).fill_null("").str.split(separator)
    values = values.list.eval(pl.element().filter(pl.element().str.len_bytes() > 0))
    return values.fill_null(pl.lit([], dtype=pl.List(pl.Utf8)))


def _read_delimited(
    text: str, sep: str, quote: str | None, names: list[str] | None = None
) -> pl.DataFrame:
    """Header-less delimited ``text`` as Utf8 columns (empty fields null), named ``names``."""
    return pl.read_csv(
        io.BytesIO(text.encode("utf-8")),
        has_header=False,
        new_columns=names,
        separator=sep,
        quote_char=quote,
        infer_schema=False,
        empty_string_is_null=True,
    )


class CtrTableReader:
    """Streams a flat CTR table (CSV, TSV or Parquet) whose column roles come from config.

    Args:
        paths: a file, a glob pattern, or a list of them (read in order; globs sorted).
        format: ``"csv"``, ``"tsv"``, ``"parquet"``, or None to infer from each suffix.
        labels: label columns (at least one), converted to Float32 in {0, 1}.
        dense: numeric columns, Float64 (null = missing).
        sparse: categorical columns, Utf8 (null = missing).
        multi: multi-valued columns mapped to their value separator, List(Utf8).
        timestamp: the event-time column (Int64 unix seconds), or None.
        timestamp_format: None (unix seconds or ISO-8601), ``"unix_ms"``, or a strptime
            format such as ``"%y%m%d%H"`` (Avazu's ``hour``).
        timestamp_years: ``(first, last)``: a timestamp before Jan 1 of ``first`` or from Jan
            1 of ``last`` on is implausible (a bad row).
        has_header: whether text files start with a header line (Parquet has names).
        separator: field separator for text files (default ``,`` for CSV, tab for TSV).
        on_bad_rows: ``"error"`` or ``"skip"``.
        aux: columns carried unchanged (never model inputs).
        column_names: names for the columns of text files (required sense without a header;
            replaces the header's names when given with one). Without a header and without
            names, columns are called ``column_1``, ``column_2``, ...
        encoding: text encoding of CSV/TSV files.
        chunk_rows: rows per Parquet batch.
        chunk_bytes: bytes per CSV/TSV block.
        name: the source's name in reports and manifests.
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        format: str | None = None,
        labels: Sequence[str] = (),
        dense: Sequence[str] = (),
        sparse: Sequence[str] = (),
        multi: Mapping[str, str] | None = None,
        timestamp: str | None = None,
        timestamp_format: str | None = None,
        timestamp_years: Sequence[int] = (1995, 2100),
        has_header: bool = True,
        separator: str | None = None,
        on_bad_rows: str = "error",
        aux: Sequence[str] = (),
        column_names: Sequence[str] | None = None,
        encoding: str = "utf-8",
        chunk_rows: int = 500_000,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        name: str = "ctr_table",
    ) -> None:
        self.paths = resolve_paths(paths)
        if format is not None and format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS} or None, got {format!r}")
        self.formats = [format or infer_format(p) for p in self.paths]
        if not labels:
            raise ValueError("CtrTableReader needs at least one label column")
        multi = dict(multi or {})
        for col, sep in multi.items():
            if not isinstance(sep, str) or not sep:
                raise ValueError(f"multi column {col!r} needs a non-empty separator, got {sep!r}")
        self.schema = RawSchema(
            labels=tuple(labels),
            dense=tuple(dense),
            sparse=tuple(sparse),
            multi=tuple(multi),
            timestamp=timestamp,
            aux=tuple(aux),
        )
        columns = self.schema.columns()
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"columns named in more than one role: {repeated}")
        if separator is not None and not separator:
            raise ValueError("separator must be a non-empty string")
        if chunk_rows < 1 or chunk_bytes < 1:
            raise ValueError("chunk_rows and chunk_bytes must be positive")
        self.multi_separators = multi
        years = tuple(int(y) for y in timestamp_years)
        if len(years) != 2 or years[0] >= years[1]:
            raise ValueError(f"timestamp_years must be (first, last), got {timestamp_years}")
        self.timestamp_format = timestamp_format
        self.timestamp_bounds = tuple(int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) for y in years)
        self.timestamp_years = years
        self.has_header = has_header
        self.separator = separator
        self.on_bad_rows = check_policy(on_bad_rows)
        self.column_names = list(column_names) if column_names is not None else None
        self.encoding = encoding
        self.chunk_rows = chunk_rows
        self.chunk_bytes = chunk_bytes
        self.name = name
        self.report = ReadReport()

    # -- shared conversion -------------------------------------------------------------

    def _require_columns(self, available: Sequence[str], path: Path) -> None:
        for col in self.schema.columns():
            if col not in available:
                raise DataError(
                    f"missing column {col!r}; available columns: {list(available)}",
                    path=str(path),
                    field=col,
                )

    def _convert(self, frame: pl.DataFrame, path: Path) -> pl.DataFrame:
        """Validates and converts raw columns (any dtypes), applying the bad-row policy."""
        schema = frame.schema
        s = self.schema
        checks: list[Check] = []
        for col in s.labels:
            value = _number(col, schema[col])
            checks.append(
                Check(
                    col,
                    value.is_null() | ~value.is_in([0.0, 1.0]),
                    pl.col(col),
                    "label must be 0 or 1",
                )
            )
        for col in s.dense:
            checks.append(
                Check(
                    col,
                    pl.col(col).is_not_null() & _number(col, schema[col]).is_null(),
                    pl.col(col),
                    "not a number",
                )
            )
        if s.timestamp is not None:
            ts = s.timestamp
            seconds = _epoch_seconds(ts, schema[ts], self.timestamp_format)
            expected = (
                f"a date-time of format {self.timestamp_format!r}"
                if self.timestamp_format
                else "integer unix seconds or an ISO-8601 date-time"
            )
            lo, hi = self.timestamp_bounds
            checks.append(Check(ts, seconds.is_null(), pl.col(ts), f"timestamp must be {expected}"))
            checks.append(
                Check(
                    ts,
                    seconds.is_not_null() & ((seconds < lo) | (seconds >= hi)),
                    pl.col(ts),
                    f"implausible timestamp: read as {expected}, it is not in "
                    f"{self.timestamp_years[0]}-{self.timestamp_years[1]}; set "
                    "data.source.timestamp_format (e.g. '%y%m%d%H' for Avazu's hour) or "
                    "data.source.timestamp_years",
                )
            )
        good = apply_checks(frame, checks, path=path, policy=self.on_bad_rows, report=self.report)
        exprs = [_number(c, schema[c]).cast(pl.Float32).alias(c) for c in s.labels]
        exprs.extend(_number(c, schema[c]).fill_nan(None).alias(c) for c in s.dense)
        exprs.extend(self._sparse(c) for c in s.sparse)
        exprs.extend(_multi(c, schema[c], self.multi_separators[c]).alias(c) for c in s.multi)
        if s.timestamp is not None:
            ts_expr = _epoch_seconds(s.timestamp, schema[s.timestamp], self.timestamp_format)
            exprs.append(ts_expr.alias(s.timestamp))
        exprs.extend(pl.col(c) for c in s.aux)
        exprs.append(pl.col(ROW_COLUMN))
        return good.select(exprs)

    @staticmethod
    def _sparse(col: str) -> pl.Expr:
        text = pl.col(col).cast(pl.Utf8)
        return pl.when(text.str.len_bytes() == 0).then(None).otherwise(text).alias(col)

    # -- streaming ---------------------------------------------------------------------

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        """Yields converted frames in file order. Resets ``report`` first."""
        self.report = ReadReport()
        counter = RowCounter()
        for path, fmt in zip(self.paths, self.formats):
            chunks = (
                self._parquet_chunks(path, counter)
                if fmt == "parquet"
                else self._text_chunks(path, fmt, counter)
            )
            for raw in chunks:
                frame = self._convert(raw, path)
                self.report.rows_read += frame.height
                if frame.height:
                    yield frame

    def _parquet_chunks(self, path: Path, counter: RowCounter) -> Iterator[pl.DataFrame]:
        import pyarrow.parquet as pq

        try:
            pfile = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a non-Parquet file
            raise DataError(f"cannot open as Parquet: {exc}", path=str(path)) from exc
        self._require_columns(pfile.schema_arrow.names, path)
        needed = self.schema.columns()
        first = 1
        for batch in pfile.iter_batches(batch_size=self.chunk_rows, columns=needed):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(
                (pl.int_range(pl.len(), dtype=pl.Int64) + first).alias(LINENO)
            )
            first += frame.height
            yield counter.number(frame)

    def _text_chunks(self, path: Path, fmt: str, counter: RowCounter) -> Iterator[pl.DataFrame]:
        sep = self.separator or ("," if fmt == "csv" else "\t")
        quote = '"' if fmt == "csv" else None
        names: list[str] | None = None
        for lines in iter_file_lines(path, chunk_bytes=self.chunk_bytes, encoding=self.encoding):
            if names is None:
                names = self._text_names(lines, path, sep, quote)
                if self.has_header:
                    lines = lines.slice(1)
            lines = counter.number(lines)
            stripped = pl.col(LINE)
            if quote is not None:
                stripped = stripped.str.replace_all(_QUOTED, "")
            count = stripped.str.count_matches(sep, literal=True) + 1
            shape_check = Check(None, count != len(names), count, f"expected {len(names)} fields")
            if self.on_bad_rows == "error":
                self._raise_first_error(lines, count != len(names), path, names, sep, quote)
            lines = apply_checks(
                lines, [shape_check], path=path, policy=self.on_bad_rows, report=self.report
            )
            if lines.height:
                yield self._parse_lines(lines, path, names, sep, quote)
        if names is None and self.has_header:
            raise DataError("file is empty; expected a header line", path=str(path))

    def _raise_first_error(
        self,
        lines: pl.DataFrame,
        misshapen: pl.Expr,
        path: Path,
        names: list[str],
        sep: str,
        quote: str | None,
    ) -> None:
        """Under ``"error"``, surfaces value errors on lines before the first misshapen line.

        Keeps the promise that the error names the first bad row in file order.
        """
        first_bad = lines.filter(misshapen)[LINENO].min()
        if first_bad is None:
            return
        before = lines.filter(pl.col(LINENO) < first_bad)
        if before.height:
            self._convert(self._parse_lines(before, path, names, sep, quote), path)

    def _text_names(
        self, lines: pl.DataFrame, path: Path, sep: str, quote: str | None
    ) -> list[str]:
        parsed = _read_delimited(lines[LINE][0], sep, quote)
        if self.column_names is not None:
            names = list(self.column_names)
            if len(names) != parsed.width:
                raise DataError(
                    f"{len(names)} column_names given but the first line has {parsed.width} fields",
                    path=str(path),
                    line=int(lines[LINENO][0]),
                )
        elif self.has_header:
            names = [str(v).strip() if v is not None else "" for v in parsed.row(0)]
        else:
            names = [f"column_{i}" for i in range(1, parsed.width + 1)]
        self._require_columns(names, path)
        return names

    def _parse_lines(
        self, lines: pl.DataFrame, path: Path, names: list[str], sep: str, quote: str | None
    ) -> pl.DataFrame:
        text = lines[LINE].str.join("\n").item() + "\n"
        try:
            parsed = _read_delimited(text, sep, quote, names)
        except pl.exceptions.PolarsError as exc:
            raise DataError(
                f"cannot parse lines {lines[LINENO][0]}-{lines[LINENO][-1]}: {exc}",
                path=str(path),
            ) from exc
        if parsed.height != lines.height:
            raise DataError(
                f"lines {lines[LINENO][0]}-{lines[LINENO][-1]} parsed into {parsed.height} rows "
                f"instead of {lines.height} (a quoted value with a newline or unbalanced quote?)",
                path=str(path),
            )
        needed = self.schema.columns()
        return parsed.select(needed).with_columns(lines[LINENO], lines[ROW_COLUMN])

    def describe(self) -> dict[str, object]:
        """JSON-able facts: paths, formats, parameters, schema and the read report."""
        return {
            "reader": "ctr_table",
            "name": self.name,
            "paths": [str(p) for p in self.paths],
            "formats": sorted(set(self.formats)),
            "has_header": self.has_header,
            "separator": self.separator,
            "multi_separators": dict(self.multi_separators),
            "on_bad_rows": self.on_bad_rows,
            "schema": self.schema.to_dict(),
            "report": self.report.to_dict(),
        }
