"""Tests of the readers of real formats: Criteo TSV, MovieLens releases, generic CTR tables.

Real data is read from ``../shared/data`` beside the repository (never copied into it); those
tests skip when the folder is absent. Malformed inputs are small files written to tmp_path.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from recsys.data.readers import (
    READERS,
    CriteoReader,
    CtrTableReader,
    MovieLensReader,
    reader_class,
)
from recsys.data.readers.movielens import detect_release
from recsys.data.source import ROW_COLUMN, RawSource
from recsys.types import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CRITEO_FILE = SHARED_DATA / "criteo-kaggle-head1000" / "train.txt"
ML100K = SHARED_DATA / "ml-100k"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (see ../shared/data/README.md)")
    return path


def _read_all(reader: RawSource) -> pl.DataFrame:
    frames = list(reader.iter_chunks())
    for frame in frames:
        assert frame.columns == [*reader.schema.columns(), ROW_COLUMN]
    return pl.concat(frames)


def _criteo_line(label: str = "0", ints: list[str] | None = None, cats: int = 26) -> str:
    ints = ints if ints is not None else [str(i) for i in range(13)]
    return "\t".join([label, *ints, *[f"{i:08x}" for i in range(cats)]])


# -- Criteo ------------------------------------------------------------------------------


def test_criteo_real_file_reads_every_row() -> None:
    path = _need(CRITEO_FILE)
    lines = path.read_text(encoding="utf-8").splitlines()
    reader = CriteoReader(path)
    df = _read_all(reader)
    assert isinstance(reader, RawSource)
    assert df.height == len(lines) >= 999
    assert reader.report.rows_read == df.height and reader.report.rows_skipped == 0
    assert df[ROW_COLUMN].to_list() == list(range(df.height))
    assert df.schema["label"] == pl.Float32 and df.schema["I1"] == pl.Float64
    assert df.schema["C1"] == pl.Utf8
    assert set(df["label"].unique().to_list()) == {0.0, 1.0}
    # Row 1 against a plain-Python parse of the file's first line.
    fields = lines[0].split("\t")
    fields += [""] * (40 - len(fields))
    row = df.row(0, named=True)
    assert row["label"] == float(fields[0]) == 0.0
    assert row["I5"] == 1382.0
    for i in range(13):
        expected = float(fields[1 + i]) if fields[1 + i] else None
        assert row[f"I{i + 1}"] == expected
    assert row["I12"] is None  # empty in the file
    for i in range(26):
        assert row[f"C{i + 1}"] == (fields[14 + i] or None)
    assert row["C1"] == "68fd1e64" and row["C26"] == "9727dd16"
    # Rows with stripped trailing fields are padded with nulls.
    short = next(i for i, line in enumerate(lines) if line.count("\t") + 1 < 40)
    assert df.row(short, named=True)["C26"] is None
    json.dumps(reader.describe())


def test_criteo_small_blocks_give_the_same_frame() -> None:
    path = _need(CRITEO_FILE)
    whole = _read_all(CriteoReader(path))
    reader = CriteoReader([path, path], chunk_bytes=4096)
    frames = list(reader.iter_chunks())
    assert len(frames) > 10
    both = pl.concat(frames)
    assert both.height == 2 * whole.height
    assert both[ROW_COLUMN].to_list() == list(range(both.height))
    assert both.head(whole.height).drop(ROW_COLUMN).equals(whole.drop(ROW_COLUMN))


def test_criteo_pads_blank_lines_crlf_negative_and_gzip(tmp_path: Path) -> None:
    ints = ["-3", "", *[str(i) for i in range(11)]]
    text = _criteo_line("1", ints) + "\r\n\n" + "0\t5" + "\r\n" + _criteo_line("0")
    plain = tmp_path / "day.txt"
    plain.write_text(text, encoding="utf-8")
    gz = tmp_path / "day.txt.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    for path in (plain, gz):
        df = _read_all(CriteoReader(path))
        assert df.height == 3
        assert df["label"].to_list() == [1.0, 0.0, 0.0]
        assert df["I1"].to_list() == [-3.0, 5.0, 0.0]
        assert df["I2"].to_list() == [None, None, 1.0]
        assert df.row(1, named=True)["C1"] is None  # padded
        assert df["C26"].to_list() == ["00000019", None, "00000019"]
        assert df[ROW_COLUMN].to_list() == [0, 1, 2]


def _bad_criteo(tmp_path: Path) -> Path:
    path = tmp_path / "bad.txt"
    ints = [str(i) for i in range(13)]
    ints[4] = "x7"
    rows = [
        _criteo_line("0"),  # line 1 ok
        _criteo_line("0", ints),  # line 2: I5 not an integer
        "",  # line 3: blank, ignored
        _criteo_line("2"),  # line 4: label not 0/1
        _criteo_line("1", cats=27),  # line 5: 41 fields
        _criteo_line("1"),  # line 6 ok
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_criteo_bad_row_errors_name_file_line_field_value(tmp_path: Path) -> None:
    path = _bad_criteo(tmp_path)
    with pytest.raises(DataError) as info:
        list(CriteoReader(path).iter_chunks())
    err = info.value
    assert (err.path, err.line, err.field, err.value) == (str(path), 2, "I5", "x7")
    assert str(path) in str(err) and "line 2" in str(err) and "I5" in str(err)


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [(4, "label", "2"), (5, None, "41")],
)
def test_criteo_each_kind_of_bad_row(tmp_path: Path, line: int, field: str, value: str) -> None:
    path = _bad_criteo(tmp_path)
    text = path.read_text().split("\n")
    keep = [text[0], *[""] * (line - 2), text[line - 1]]  # bad row keeps its line number
    path.write_text("\n".join(keep) + "\n")
    with pytest.raises(DataError) as info:
        list(CriteoReader(path).iter_chunks())
    assert (info.value.line, info.value.field, info.value.value) == (line, field, value)


def test_criteo_skip_policy_drops_and_reports(tmp_path: Path) -> None:
    path = _bad_criteo(tmp_path)
    reader = CriteoReader(path, on_bad_rows="skip")
    df = _read_all(reader)
    assert df["label"].to_list() == [0.0, 1.0]
    assert df[ROW_COLUMN].to_list() == [0, 4]  # positions among non-blank lines
    assert reader.report.rows_read == 2 and reader.report.rows_skipped == 3
    assert len(reader.report.examples) == 3
    assert "line 2" in reader.report.examples[0] and "I5" in reader.report.examples[0]
    with pytest.raises(ValueError, match="on_bad_rows"):
        CriteoReader(path, on_bad_rows="ignore")


# -- MovieLens ---------------------------------------------------------------------------


def test_movielens_100k_real_release() -> None:
    folder = _need(ML100K)
    reader = MovieLensReader(folder)
    assert reader.release == "100k" == detect_release(folder)
    df = _read_all(reader)
    ratings = [line.split("\t") for line in (folder / "u.data").read_text().splitlines()]
    assert df.height == len(ratings) == 100_000
    assert reader.report.rows_skipped == 0
    assert df["user_id"].n_unique() == 943 and df["item_id"].n_unique() == 1682
    positives = sum(1 for r in ratings if float(r[2]) >= 4.0)
    assert df["label"].sum() == positives
    assert df["rating"].to_list()[:3] == [float(r[2]) for r in ratings[:3]]
    assert df["user_id"].to_list()[:3] == [r[0] for r in ratings[:3]]
    assert df["timestamp"].to_list()[:3] == [int(r[3]) for r in ratings[:3]]
    assert df[ROW_COLUMN].to_list() == list(range(100_000))
    assert reader.schema.sparse == (
        "user_id", "item_id", "age", "gender", "occupation", "zip_prefix", "release_year",
    )  # fmt: skip
    assert reader.schema.multi == ("genres",) and reader.schema.aux == ("rating",)
    assert df.schema["genres"] == pl.List(pl.Utf8) and df.schema["timestamp"] == pl.Int64
    assert df.schema["rating"] == pl.Float32 and df.schema["label"] == pl.Float32
    toy = df.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy["release_year"] == "1995"
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    user1 = df.filter(pl.col("user_id") == "1").row(0, named=True)
    assert (user1["age"], user1["gender"], user1["occupation"], user1["zip_prefix"]) == (
        "24", "M", "technician", "857",
    )  # fmt: skip
    assert df.filter(pl.col("item_id") == "267")["release_year"].null_count() > 0
    assert df["genres"].list.len().min() >= 1
    assert df["release_year"].null_count() < 100
    json.dumps(reader.describe())


def test_movielens_threshold_and_zip_prefix() -> None:
    folder = _need(ML100K)
    df = _read_all(MovieLensReader(folder, label_threshold=5.0, zip_prefix_len=1))
    assert df["label"].sum() == (df["rating"] >= 5.0).sum()
    assert df["zip_prefix"].str.len_chars().max() == 1


def _write_1m(folder: Path, ratings: str, with_users: bool = True) -> Path:
    folder.mkdir()
    (folder / "ratings.dat").write_bytes(ratings.encode("latin-1"))
    if with_users:
        users = "1::F::1::10::48067\n2::M::56::16::70072-1234\n"
        (folder / "users.dat").write_bytes(users.encode("latin-1"))
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Café au lait (Métisse) (1993)::Comedy\n"
        "3::Untitled::\n"
    )
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    return folder


def test_movielens_1m_format(tmp_path: Path) -> None:
    ratings = (
        "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n2::99::1::978300275\n"
        "7::1::4::978300000\n"  # user 7 is not in users.dat: null user features
    )
    folder = _write_1m(tmp_path / "ml-1m", ratings)
    reader = MovieLensReader(folder, zip_prefix_len=2)
    assert reader.release == "1m"
    df = _read_all(reader)
    assert df["label"].to_list() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert df["zip_prefix"].to_list() == ["48", "48", "70", "70", None]
    assert df["age"].to_list() == ["1", "1", "56", "56", None]
    assert df["gender"].to_list()[0] == "F" and df["occupation"].to_list()[0] == "10"
    assert df["release_year"].to_list() == ["1995", "1993", None, None, "1995"]
    genres = [["Animation", "Children's", "Comedy"], ["Comedy"], [], []]
    assert df["genres"].to_list() == [*genres, genres[0]]
    assert reader.items() is not None
    assert "Métisse" not in str(reader.items()["release_year"].to_list())
    assert df["timestamp"].to_list()[0] == 978300760


def test_movielens_1m_latin1_title_and_missing_users(tmp_path: Path) -> None:
    folder = _write_1m(tmp_path / "ml-10m", "1::2::4.5::1\n", with_users=False)
    reader = MovieLensReader(folder)
    assert reader.schema.sparse == ("user_id", "item_id", "release_year")
    df = _read_all(reader)
    assert df.row(0, named=True)["release_year"] == "1993"
    titles = pl.Series((folder / "movies.dat").read_bytes().decode("latin-1").splitlines())
    assert titles.str.contains("Café").any()


def test_movielens_latest_format_with_tags(tmp_path: Path) -> None:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    ratings = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n2,2,3.5,1\n"
    (folder / "ratings.csv").write_bytes(b"\xef\xbb\xbf" + ratings.encode())  # with a BOM
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Babylon 5,(no genres listed)\n"
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,pixar,1\n")
    reader = MovieLensReader(folder, label_threshold=3.5)
    assert reader.release == "latest"
    assert reader.schema.sparse == ("user_id", "item_id", "release_year")
    df = _read_all(reader)
    assert df["label"].to_list() == [1.0, 0.0, 1.0]
    assert df["rating"].to_list() == [4.0, 0.5, 3.5]
    assert df["release_year"].to_list() == ["1995", None, "1995"]
    assert df["genres"].to_list() == [
        ["Adventure", "Animation"], [], ["Comedy", "Drama", "Romance"],
    ]  # fmt: skip
    assert reader.describe()["tags_file_ignored"] is True


def test_movielens_bad_rating_rows(tmp_path: Path) -> None:
    ratings = "1::1::5::978300760\n1::2::great::978302109\n\n2::3::4\n2::1::7::1\n2::1::4::1\n"
    folder = _write_1m(tmp_path / "ml-1m", ratings)
    with pytest.raises(DataError) as info:
        list(MovieLensReader(folder).iter_chunks())
    err = info.value
    assert (err.line, err.field, err.value) == (2, "rating", "great")
    assert "ratings.dat" in str(err)
    reader = MovieLensReader(folder, on_bad_rows="skip")
    df = _read_all(reader)
    assert df[ROW_COLUMN].to_list() == [0, 4]
    assert reader.report.rows_skipped == 3
    fields = [e.split("field ")[1].split(":")[0] for e in reader.report.examples]
    assert fields == ["rating", "timestamp", "rating"]  # missing field = missing timestamp


def test_movielens_bad_header_and_unknown_folder(tmp_path: Path) -> None:
    folder = tmp_path / "latest"
    folder.mkdir()
    (folder / "ratings.csv").write_text("user,item,rating,ts\n1,1,4,1\n")
    with pytest.raises(DataError, match="expected header"):
        list(MovieLensReader(folder).iter_chunks())
    other = tmp_path / "other"
    other.mkdir()
    (other / "clicks.csv").write_text("a\n")
    with pytest.raises(ValueError, match=r"u\.data.*ratings\.dat.*ratings\.csv"):
        MovieLensReader(other)
    with pytest.raises(FileNotFoundError):
        MovieLensReader(tmp_path / "missing")


# -- Generic CTR tables --------------------------------------------------------------------


def _ctr(paths: object, **kwargs: object) -> CtrTableReader:
    spec: dict[str, object] = {
        "labels": ["click"],
        "dense": ["price"],
        "sparse": ["user", "ad"],
        "multi": {"tags": "|"},
        "timestamp": "ts",
        "aux": ["note"],
    }
    spec.update(kwargs)
    return CtrTableReader(paths, **spec)  # type: ignore[arg-type]


CSV_TEXT = (
    "ts,user,ad,click,price,tags,note,extra\n"
    '1600000000,u1,a1,1,2.5,x|y,"hello, world",0\n'
    "2020-01-02T03:04:05Z,u2,,0,,,,0\n"
    "2020-01-02 03:04:05,7,a3,0.0,-1,z,n,0\n"
)


def test_ctr_csv(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(CSV_TEXT)
    reader = _ctr(path)
    df = _read_all(reader)
    assert df.columns == ["click", "price", "user", "ad", "tags", "ts", "note", ROW_COLUMN]
    assert df.schema["click"] == pl.Float32 and df.schema["price"] == pl.Float64
    assert df.schema["tags"] == pl.List(pl.Utf8) and df.schema["ts"] == pl.Int64
    assert df["click"].to_list() == [1.0, 0.0, 0.0]
    assert df["price"].to_list() == [2.5, None, -1.0]
    assert df["user"].to_list() == ["u1", "u2", "7"] and df["ad"].to_list() == ["a1", None, "a3"]
    assert df["tags"].to_list() == [["x", "y"], [], ["z"]]
    assert df["ts"].to_list() == [1600000000, 1577934245, 1577934245]
    assert df["note"].to_list() == ["hello, world", None, "n"]
    json.dumps(reader.describe())
    gz = tmp_path / "clicks.csv.gz"
    gz.write_bytes(gzip.compress(CSV_TEXT.encode()))
    assert _read_all(_ctr(gz)).equals(df)


def test_ctr_csv_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(
        CSV_TEXT + "1,u4,a4,yes,1,,,0\n1,u5,a5,1,cheap,,,0\n1,u6,a6,1,1,,,0,9\nsoon,u,a,1,1,,,0\n"
    )
    with pytest.raises(DataError) as info:
        list(_ctr(path).iter_chunks())
    assert (info.value.line, info.value.field, info.value.value) == (5, "click", "yes")
    reader = _ctr(path, on_bad_rows="skip")
    df = _read_all(reader)
    assert df.height == 3 and reader.report.rows_skipped == 4
    joined = " ".join(reader.report.examples)
    for text in ("line 5, field click", "line 6, field price", "line 7", "line 8, field ts"):
        assert text in joined


def test_ctr_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(CSV_TEXT)
    with pytest.raises(DataError) as info:
        list(_ctr(path, sparse=["user", "campaign"]).iter_chunks())
    message = str(info.value)
    assert "campaign" in message and str(path) in message and "'extra'" in message


def test_ctr_tsv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "part.tsv"
    path.write_text(
        "1\t0.5\tu1\ta1\tp|q\t1600000100\tn\n0\tbad\tu2\ta2\t\t1600000200\tn\n"
        "0\t\tu3\ta3\t\t1600000300\tn\n"
    )
    names = ["click", "price", "user", "ad", "tags", "ts", "note"]
    with pytest.raises(DataError) as info:
        list(_ctr(path, has_header=False, column_names=names).iter_chunks())
    assert (info.value.line, info.value.field, info.value.value) == (2, "price", "bad")
    reader = _ctr(path, has_header=False, column_names=names, on_bad_rows="skip")
    df = _read_all(reader)
    assert df["user"].to_list() == ["u1", "u3"] and df[ROW_COLUMN].to_list() == [0, 2]
    assert df["tags"].to_list() == [["p", "q"], []]
    plain = CtrTableReader(path, labels=["column_1"], has_header=False, on_bad_rows="skip")
    assert _read_all(plain)["column_1"].to_list() == [1.0, 0.0, 0.0]


def test_ctr_parquet_and_glob(tmp_path: Path) -> None:
    import datetime as dt

    frame = pl.DataFrame(
        {
            "click": [1, 0, 2, 1],
            "price": [1.5, None, 3.0, float("nan")],
            "user": [10, 11, 12, 13],
            "ad": ["a", "b", "c", ""],
            "tags": [["x"], [], None, ["y", "z"]],
            "ts": [dt.datetime(2020, 1, 1, 0, 0, 1)] * 4,
            "note": [1, 2, 3, 4],
        }
    )
    frame.head(2).write_parquet(tmp_path / "p0.parquet")
    frame.tail(2).write_parquet(tmp_path / "p1.parquet", row_group_size=1)
    pattern = str(tmp_path / "p*.parquet")
    with pytest.raises(DataError) as info:
        list(_ctr(pattern, chunk_rows=1).iter_chunks())
    err = info.value
    assert (err.line, err.field, err.value) == (1, "click", "2")
    assert err.path is not None and err.path.endswith("p1.parquet")
    reader = _ctr(pattern, chunk_rows=1, on_bad_rows="skip")
    df = _read_all(reader)
    assert df["click"].to_list() == [1.0, 0.0, 1.0]
    assert df[ROW_COLUMN].to_list() == [0, 1, 3]
    assert df["user"].to_list() == ["10", "11", "13"] and df["ad"].to_list() == ["a", "b", None]
    assert df["price"].to_list() == [1.5, None, None]
    assert df["tags"].to_list() == [["x"], [], ["y", "z"]]
    assert df["ts"].to_list() == [1577836801] * 3 and df["note"].to_list() == [1, 2, 4]
    with pytest.raises(DataError, match="missing column 'label'"):
        list(CtrTableReader(pattern, labels=["label"]).iter_chunks())


def test_ctr_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "clicks.data"
    path.write_text(CSV_TEXT)
    with pytest.raises(ValueError, match="cannot infer the format"):
        _ctr(path)
    assert _read_all(_ctr(path, format="csv")).height == 3
    with pytest.raises(ValueError, match="more than one role"):
        _ctr(path, format="csv", sparse=["user", "price"])
    with pytest.raises(FileNotFoundError, match="matches no files"):
        _ctr(str(tmp_path / "none*.csv"))


# -- Registry ------------------------------------------------------------------------------


def test_registry() -> None:
    assert reader_class("criteo") is CriteoReader
    assert reader_class("movielens") is MovieLensReader
    assert reader_class("ctr_table") is CtrTableReader
    assert set(READERS) == {"criteo", "movielens", "ctr_table"}
    with pytest.raises(KeyError, match="known kinds"):
        reader_class("avazu")


def test_ctr_timestamp_formats_and_implausible_values(tmp_path: Path) -> None:
    path = tmp_path / "avazu.csv"
    path.write_text("hour,click,site\n14102100,1,a\n14102123,0,b\n")
    spec = {"labels": ["click"], "sparse": ["site"], "timestamp": "hour"}
    avazu = _read_all(CtrTableReader(path, timestamp_format="%y%m%d%H", **spec))
    assert avazu["hour"].to_list() == [1413849600, 1413849600 + 23 * 3600]  # 2014-10-21 UTC
    with pytest.raises(DataError, match=r"line 2.*implausible timestamp.*%y%m%d%H"):
        _read_all(CtrTableReader(path, **spec))  # YYMMDDHH read as unix seconds: 1970
    millis = tmp_path / "ms.csv"
    millis.write_text("ts,click,site\n1600000000123,1,a\n")
    ms = _read_all(CtrTableReader(millis, timestamp_format="unix_ms", **{**spec, "timestamp": "ts"}))
    assert ms["ts"].to_list() == [1600000000]
    with pytest.raises(ValueError, match="timestamp_years"):
        CtrTableReader(path, timestamp_years=(2100, 1995), **spec)
