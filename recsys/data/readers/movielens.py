"""Reader of the MovieLens releases (GroupLens) in their original file formats.

The release is detected from the folder contents:

* ``100k``: ``u.data`` (tab-separated ``user item rating timestamp``), ``u.user``
  (``id|age|gender|occupation|zip``), ``u.item`` (``|``-separated, Latin-1:
  ``id|title|release date|video release date|url|`` + one 0/1 flag per genre) and
  ``u.genre`` (``name|index``).
* ``1m`` (also 10M): ``ratings.dat``, ``users.dat`` (``UserID::Gender::Age::Occupation::Zip``)
  and ``movies.dat`` (``MovieID::Title (Year)::Genre|Genre``), ``::``-separated, Latin-1.
* ``latest`` (also 20M, 25M): ``ratings.csv`` with header ``userId,movieId,rating,timestamp``
  and ``movies.csv`` (``movieId,title,genres``, quoted CSV, UTF-8). ``tags.csv``, ``links.csv``
  and the tag genome are not read.

Side tables a release lacks are absent from the schema. Ratings stream in byte blocks and are
joined per block with the (small) side tables, loaded once. Rows keep the ratings-file order.

Example::

    reader = MovieLensReader("ml-100k", label_threshold=4.0)
    frames = list(reader.iter_chunks())  # label, user_id, item_id, ..., genres, timestamp, rating
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys.data.readers._lines import (
    DEFAULT_CHUNK_BYTES,
    LINE,
    LINENO,
    Check,
    RowCounter,
    apply_checks,
    empty_to_null,
    iter_file_lines,
    split_fields,
)
from recsys.data.source import ROW_COLUMN, ReadReport, check_policy
from recsys.types import DataError, RawSchema

USER_FEATURES = ("age", "gender", "occupation", "zip_prefix")
ITEM_SPARSE = ("release_year",)
GENRES = "genres"
NO_GENRES = "(no genres listed)"
LATEST_HEADER = ("userId", "movieId", "rating", "timestamp")
MAX_RATING = 5.0
# Genre names of ml-100k, used when u.genre is missing.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_TITLE_YEAR = r"\((\d{4})(?:[-–]\d{4})?\)\s*$"
_UID = "_uid"
_IID = "_iid"


@dataclass(frozen=True)
class _Layout:
    release: str
    ratings: str
    separator: str
    encoding: str
    has_header: bool
    users: str | None
    items: str | None


_LAYOUTS = (
    _Layout("100k", "u.data", "\t", "latin-1", False, "u.user", "u.item"),
    _Layout("1m", "ratings.dat", "::", "latin-1", False, "users.dat", "movies.dat"),
    _Layout("latest", "ratings.csv", ",", "utf-8", True, None, "movies.csv"),
)


def detect_release(folder: str | Path) -> str:
    """Returns ``"100k"``, ``"1m"`` or ``"latest"`` for a MovieLens folder.

    Raises ``FileNotFoundError`` if the folder is missing and ``ValueError`` listing the
    expected files if it holds no known ratings file.
    """
    return _layout_of(Path(folder)).release


def _layout_of(folder: Path) -> _Layout:
    if not folder.is_dir():
        raise FileNotFoundError(f"MovieLens folder {folder} does not exist or is not a folder")
    for layout in _LAYOUTS:
        if (folder / layout.ratings).is_file():
            return layout
    found = sorted(p.name for p in folder.iterdir())[:20]
    raise ValueError(
        f"{folder} is not a recognised MovieLens release: expected u.data (100K), "
        f"ratings.dat (1M/10M) or ratings.csv (latest/20M/25M); found {found}"
    )


def _int_check(name: str, field: str, what: str) -> Check:
    col = pl.col(name)
    return Check(
        field=field,
        bad=col.is_null() | col.str.strip_chars().cast(pl.Int64, strict=False).is_null(),
        value=col,
        message=f"{what} must be an integer",
    )


def _extra_check(separator: str, expected: int) -> Check:
    return Check(
        field=None,
        bad=pl.col("_extra").is_not_null(),
        value=pl.col(LINE).str.count_matches(separator, literal=True) + 1,
        message=f"too many {separator!r}-separated fields (expected {expected})",
    )


def _as_int(name: str) -> pl.Expr:
    return pl.col(name).str.strip_chars().cast(pl.Int64, strict=False)


def _read_side_lines(
    path: Path, separator: str, names: Sequence[str], encoding: str, checks: Sequence[Check]
) -> pl.DataFrame:
    """Reads a small ``separator``-delimited side table strictly (a bad line is an error)."""
    frames = [
        frame.with_columns(split_fields(pl.col(LINE), separator, names))
        for frame in iter_file_lines(path, encoding=encoding)
    ]
    if not frames:
        return pl.DataFrame(
            {LINENO: [], **{n: [] for n in names}},
            schema={LINENO: pl.Int64, **{n: pl.Utf8 for n in names}},
        )
    table = pl.concat(frames)
    all_checks = [_extra_check(separator, len(names)), *checks]
    return apply_checks(table, all_checks, path=path, policy="error", report=ReadReport())


def _unique_ids(table: pl.DataFrame, key: str, path: Path) -> pl.DataFrame:
    dup = table.filter(pl.col(key).is_duplicated())
    if dup.height:
        row = dup.row(0, named=True)
        raise DataError(
            "duplicate id in side table",
            path=str(path),
            line=row.get(LINENO),
            field=key.lstrip("_"),
            value=str(row[key]),
        )
    return table


def _movies(table: pl.DataFrame, id_column: str, path: Path) -> pl.DataFrame:
    """The movie side table (``_iid``, ``release_year``, ``genres``) of a checked listing with
    ``id_column``, ``title`` ("Name (Year)") and ``genres`` ("A|B") columns (1M and latest)."""
    items = table.select(
        LINENO,
        _as_int(id_column).alias(_IID),
        pl.col("title").str.extract(_TITLE_YEAR, 1).alias("release_year"),
        _split_genres(pl.col("genres")).alias(GENRES),
    )
    return _unique_ids(items, _IID, path).drop(LINENO)


class MovieLensReader:
    """Streams MovieLens ratings joined with user and movie side information.

    Args:
        path: the release folder (e.g. ``ml-100k``, ``ml-1m``, ``ml-latest-small``).
        label_threshold: ``label`` is 1.0 where ``rating >= label_threshold``, else 0.0.
        on_bad_rows: policy for bad ratings rows (``"error"`` or ``"skip"``). Side tables are
            small metadata and always read strictly.
        zip_prefix_len: number of leading zip-code characters kept in ``zip_prefix``.
        chunk_bytes: bytes of the ratings file read per block.

    Output columns: ``label`` (Float32); sparse ``user_id``, ``item_id`` and, when the release
    has them, ``age``, ``gender``, ``occupation``, ``zip_prefix`` (users) and
    ``release_year`` (movies; null when unknown), all Utf8; multi ``genres`` (List(Utf8),
    empty when none or the movie is unknown); ``timestamp`` (Int64 unix seconds); aux
    ``rating`` (Float32); ``_row`` (Int64, position in the ratings file). Ratings of users or
    movies missing from the side tables get null side information.
    """

    name = "movielens"

    def __init__(
        self,
        path: str | Path,
        label_threshold: float = 4.0,
        on_bad_rows: str = "error",
        zip_prefix_len: int = 3,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.path = Path(path)
        self.layout = _layout_of(self.path)
        self.release = self.layout.release
        self.label_threshold = float(label_threshold)
        self.on_bad_rows = check_policy(on_bad_rows)
        if zip_prefix_len < 1:
            raise ValueError(f"zip_prefix_len must be >= 1, got {zip_prefix_len}")
        self.zip_prefix_len = zip_prefix_len
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        self.chunk_bytes = chunk_bytes
        self.users_path = self._side_path(self.layout.users)
        self.items_path = self._side_path(self.layout.items)
        sparse = ["user_id", "item_id"]
        if self.users_path is not None:
            sparse.extend(USER_FEATURES)
        if self.items_path is not None:
            sparse.extend(ITEM_SPARSE)
        self.schema = RawSchema(
            labels=("label",),
            sparse=tuple(sparse),
            multi=(GENRES,) if self.items_path is not None else (),
            timestamp="timestamp",
            aux=("rating",),
        )
        # genres arrive as "A|B" in every release: the separator a served request may use too
        self.multi_separators = {GENRES: "|"} if self.items_path is not None else {}
        self.report = ReadReport()
        self._users: pl.DataFrame | None = None
        self._items: pl.DataFrame | None = None

    def _side_path(self, name: str | None) -> Path | None:
        if name is None or not (self.path / name).is_file():
            return None
        return self.path / name

    # -- side tables -------------------------------------------------------------------

    def users(self) -> pl.DataFrame | None:
        """The user side table (``_uid`` Int64 + user features), loaded once; None if absent."""
        if self._users is None and self.users_path is not None:
            self._users = self._load_users(self.users_path)
        return self._users

    def items(self) -> pl.DataFrame | None:
        """The movie side table (``_iid``, ``release_year``, ``genres``); None if absent."""
        if self._items is None and self.items_path is not None:
            if self.release == "100k":
                self._items = self._load_items_100k(self.items_path)
            elif self.release == "1m":
                self._items = self._load_items_1m(self.items_path)
            else:
                self._items = self._load_items_csv(self.items_path)
        return self._items

    def _load_users(self, path: Path) -> pl.DataFrame:
        if self.release == "100k":
            sep, names = "|", ["id", "age", "gender", "occupation", "zip"]
        else:
            sep, names = "::", ["id", "gender", "age", "occupation", "zip"]
        table = _read_side_lines(
            path, sep, names, self.layout.encoding, [_int_check("id", "user_id", "user id")]
        )
        zip_code = pl.col("zip").str.strip_chars().str.slice(0, self.zip_prefix_len)
        users = table.select(
            LINENO,
            _as_int("id").alias(_UID),
            empty_to_null(pl.col("age").str.strip_chars()).alias("age"),
            empty_to_null(pl.col("gender").str.strip_chars()).alias("gender"),
            empty_to_null(pl.col("occupation").str.strip_chars()).alias("occupation"),
            empty_to_null(zip_code).alias("zip_prefix"),
        )
        return _unique_ids(users, _UID, path).drop(LINENO)

    def _genre_names_100k(self) -> list[str]:
        path = self.path / "u.genre"
        if not path.is_file():
            return list(GENRES_100K)
        table = _read_side_lines(
            path, "|", ["name", "index"], "latin-1", [_int_check("index", "index", "genre index")]
        )
        table = table.with_columns(_as_int("index").alias("_i")).sort("_i")
        expected = list(range(table.height))
        if table["_i"].to_list() != expected:
            raise DataError("genre indexes must be 0..n-1", path=str(path), field="index")
        return table["name"].to_list()

    def _load_items_100k(self, path: Path) -> pl.DataFrame:
        genres = self._genre_names_100k()
        flags = [f"_g{i}" for i in range(len(genres))]
        names = ["id", "title", "release", "video", "url", *flags]
        checks = [_int_check("id", "item_id", "movie id")]
        checks.extend(
            Check(
                field=f"genre {genre}",
                bad=~pl.col(flag).is_in(["0", "1"]).fill_null(False),
                value=pl.col(flag),
                message="genre flag must be 0 or 1",
            )
            for flag, genre in zip(flags, genres)
        )
        table = _read_side_lines(path, "|", names, self.layout.encoding, checks)
        release = pl.col("release").str.strip_chars()
        year = release.str.strptime(pl.Date, "%d-%b-%Y", strict=False).dt.year().cast(pl.Utf8)
        title_year = pl.col("title").str.extract(_TITLE_YEAR, 1)
        genre_list = pl.concat_list(
            [pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, genres)]
        ).list.drop_nulls()
        items = table.select(
            LINENO,
            _as_int("id").alias(_IID),
            pl.coalesce(year, title_year).alias("release_year"),
            genre_list.alias(GENRES),
        )
        return _unique_ids(items, _IID, path).drop(LINENO)

    def _load_items_1m(self, path: Path) -> pl.DataFrame:
        table = _read_side_lines(
            path,
            "::",
            ["id", "title", "genres"],
            self.layout.encoding,
            [_int_check("id", "item_id", "movie id")],
        )
        return _movies(table, "id", path)

    def _load_items_csv(self, path: Path) -> pl.DataFrame:
        try:
            table = pl.read_csv(path, infer_schema=False, encoding="utf8", row_index_name="_i")
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"cannot parse CSV: {exc}", path=str(path)) from exc
        missing = [c for c in ("movieId", "title", "genres") if c not in table.columns]
        if missing:
            raise DataError(
                f"missing column(s) {missing}; found {table.columns}", path=str(path), line=1
            )
        # Line numbers assume one line per record (true of the GroupLens files).
        table = table.with_columns((pl.col("_i").cast(pl.Int64) + 2).alias(LINENO))
        table = apply_checks(
            table,
            [_int_check("movieId", "movieId", "movie id")],
            path=path,
            policy="error",
            report=ReadReport(),
        )
        return _movies(table, "movieId", path)

    # -- ratings -----------------------------------------------------------------------

    def iter_chunks(self) -> Iterator[pl.DataFrame]:
        """Yields rating frames in ratings-file order. Resets ``report`` first."""
        self.report = ReadReport()
        users, items = self.users(), self.items()
        path = self.path / self.layout.ratings
        counter = RowCounter()
        header_seen = not self.layout.has_header
        for lines in iter_file_lines(
            path, chunk_bytes=self.chunk_bytes, encoding=self.layout.encoding
        ):
            if not header_seen:
                _check_header(lines, path)
                lines = lines.slice(1)
                header_seen = True
            lines = counter.number(lines)
            frame = self._parse(lines, path)
            if users is not None:
                frame = frame.join(users, on=_UID, how="left", maintain_order="left")
            if items is not None:
                frame = frame.join(items, on=_IID, how="left", maintain_order="left")
                frame = frame.with_columns(
                    pl.col(GENRES).fill_null(pl.lit([], dtype=pl.List(pl.Utf8)))
                )
            frame = frame.select(*self.schema.columns(), ROW_COLUMN)
            self.report.rows_read += frame.height
            if frame.height:
                yield frame

    def _parse(self, lines: pl.DataFrame, path: Path) -> pl.DataFrame:
        sep = self.layout.separator
        names = ["_user", "_item", "_rating", "_ts"]
        raw = lines.with_columns(split_fields(pl.col(LINE), sep, names))
        rating = pl.col("_rating").str.strip_chars().cast(pl.Float64, strict=False)
        checks = [
            _extra_check(sep, len(names)),
            _int_check("_user", "user_id", "user id"),
            _int_check("_item", "item_id", "item id"),
            Check(
                field="rating",
                bad=rating.is_null() | rating.is_nan() | (rating < 0) | (rating > MAX_RATING),
                value=pl.col("_rating"),
                message=f"rating must be a number in [0, {MAX_RATING:g}]",
            ),
            _int_check("_ts", "timestamp", "timestamp"),
        ]
        good = apply_checks(raw, checks, path=path, policy=self.on_bad_rows, report=self.report)
        return good.select(
            (rating >= self.label_threshold).cast(pl.Float32).alias("label"),
            _as_int("_user").cast(pl.Utf8).alias("user_id"),
            _as_int("_item").cast(pl.Utf8).alias("item_id"),
            _as_int("_ts").alias("timestamp"),
            rating.cast(pl.Float32).alias("rating"),
            _as_int("_user").alias(_UID),
            _as_int("_item").alias(_IID),
            pl.col(ROW_COLUMN),
        )

    def describe(self) -> dict[str, object]:
        """JSON-able facts: release, files read, parameters, schema and the read report."""
        present = {p.name for p in self.path.iterdir()}
        return {
            "reader": self.name,
            "release": self.release,
            "path": str(self.path),
            "ratings_file": self.layout.ratings,
            "users_file": self.users_path.name if self.users_path else None,
            "items_file": self.items_path.name if self.items_path else None,
            "tags_file_ignored": "tags.csv" in present or "tags.dat" in present,
            "label_threshold": self.label_threshold,
            "zip_prefix_len": self.zip_prefix_len,
            "on_bad_rows": self.on_bad_rows,
            "schema": self.schema.to_dict(),
            "report": self.report.to_dict(),
        }


def _split_genres(col: pl.Expr) -> pl.Expr:
    """``Action|Comedy`` -> ``["Action", "Comedy"]``; empty or "(no genres listed)" -> []."""
    text = col.fill_null("").str.strip_chars()
    text = pl.when(text == NO_GENRES).then(pl.lit("")).otherwise(text)
    return text.str.split("|").list.eval(pl.element().filter(pl.element().str.len_bytes() > 0))


def _check_header(lines: pl.DataFrame, path: Path) -> None:
    first = lines.row(0, named=True)
    got = tuple(part.strip().strip('"') for part in first[LINE].split(","))
    if got != LATEST_HEADER:
        raise DataError(
            f"expected header {','.join(LATEST_HEADER)}",
            path=str(path),
            line=int(first[LINENO]),
            value=first[LINE],
        )
