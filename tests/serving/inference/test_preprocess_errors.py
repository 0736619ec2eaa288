"""Bad requests get a RequestError naming the field (and the row); a preprocessing section
that disagrees with its files or the feature spec refuses to load; the counters count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.data.preprocess import FittedPreprocessor, PreprocessConfig
from recsys.export.manifest import ManifestError
from recsys.types import RawSchema
from serving.inference.errors import RequestError
from serving.inference.preprocess import PreprocessSettings, RankerPreprocessor
from tests.serving.inference.conftest import preprocessing_section, request_preprocessor

SCHEMA = RawSchema(
    labels=("click",), dense=("price",), sparse=("user", "ad"), multi=("tags", "cats")
)


def fitted() -> FittedPreprocessor:
    frame = pl.DataFrame(
        {
            "click": [1.0, 0.0, 1.0],
            "price": [1.0, 2.5, None],
            "user": ["a", "b", "7"],
            "ad": ["x", "y", "z"],
            "tags": [["t1"], [], ["t2", "t1"]],
            "cats": [["c1"], ["c2"], []],
        },
        schema_overrides={"tags": pl.List(pl.Utf8), "cats": pl.List(pl.Utf8)},
    )
    config = PreprocessConfig(hash_buckets={"ad": 8})
    return FittedPreprocessor.fit(frame.lazy(), SCHEMA, config)


@pytest.fixture()
def pre(tmp_path: Path) -> RankerPreprocessor:
    settings = PreprocessSettings(max_rows=4, ignored_keys=frozenset({"request_id"}))
    return request_preprocessor(fitted(), tmp_path, {"cats": ","}, settings)


GOOD = {"price": 1.0, "user": "a", "ad": "x", "tags": ["t1"], "cats": "c1,c2"}


@pytest.mark.parametrize(
    ("rows", "field", "row", "text"),
    [
        ([], "rows", None, "is empty"),
        ([GOOD] * 5, "rows", None, "more than the maximum of 4"),
        (GOOD, "rows", None, "must be a list of rows"),
        ([GOOD, "user=a"], "rows", 1, "must be an object"),
        ([GOOD, {**GOOD, "colour": "red"}], "colour", 1, "unknown feature 'colour'"),
        ([{**GOOD, "price": "1.5"}], "price", 0, "expected a number or null, got str"),
        ([GOOD, {**GOOD, "price": True}], "price", 1, "got bool"),
        ([{**GOOD, "price": [1.0]}], "price", 0, "got list"),
        ([{**GOOD, "price": 10**400}], "price", 0, "too large"),
        ([GOOD, GOOD, {**GOOD, "user": True}], "user", 2, "got bool"),
        ([{**GOOD, "user": 1.5}], "user", 0, "got float"),
        ([{**GOOD, "user": ["a"]}], "user", 0, "got list"),
        ([{**GOOD, "ad": {"id": 1}}], "ad", 0, "got dict"),
        ([{**GOOD, "ad": "\ud800"}], "ad", 0, "not valid Unicode"),
        ([GOOD, {**GOOD, "tags": "t1,t2"}], "tags", 1, "expected a list of values or null"),
        ([GOOD, {**GOOD, "tags": ["t1", 2.0]}], "tags", 1, "list element"),
        ([{**GOOD, "tags": []}, {**GOOD, "tags": ["t1", False]}], "tags", 1, "got bool"),
        ([{**GOOD, "cats": 3}], "cats", 0, "or one ','-separated string"),
    ],
)
def test_bad_requests_name_the_field(
    pre: RankerPreprocessor, rows: object, field: str, row: int | None, text: str
) -> None:
    with pytest.raises(RequestError, match=text) as info:
        pre.transform(rows)  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.row == row
    assert repr(field) in str(info.value)
    if row is not None:
        assert str(info.value).startswith(f"row {row}, ")
    assert pre.counters.snapshot()["requests"] == 0  # nothing was recorded


def test_ignored_keys_absent_features_and_counters(pre: RankerPreprocessor) -> None:
    rows = [{**GOOD, "request_id": "r1"}, {"user": "nobody", "request_id": "r2"}, {"ad": 3}]
    feeds = pre.transform(rows)
    assert feeds["user.ids"].tolist()[1:] == [1, 0]  # unseen -> 1, absent -> missing 0
    assert feeds["tags.lengths"].tolist() == [1, 0, 0]
    assert feeds["cats.lengths"].tolist() == [2, 0, 0]
    assert feeds["ad.ids"][1] == 0 and feeds["ad.ids"][2] >= 2
    snap = pre.counters.snapshot()
    assert snap["requests"] == 1 and snap["rows"] == 3
    assert snap["absent"] == {"price": 2, "user": 1, "ad": 1, "tags": 2, "cats": 2}
    assert snap["unseen"] == {"user": 1}
    assert list(feeds) == list(pre.input_names)
    assert feeds["dense"].dtype == np.float32 and feeds["dense"].shape == (3, 1)


def test_integers_are_their_decimal_strings(pre: RankerPreprocessor) -> None:
    as_int = pre.transform([{"user": 7}, {"user": np.int64(7)}])
    as_str = pre.transform([{"user": "7"}, {"user": "07"}])
    assert as_int["user.ids"].tolist() == [as_str["user.ids"][0]] * 2
    assert as_str["user.ids"][1] == 1


def _section(tmp_path: Path) -> tuple[dict, dict]:
    return preprocessing_section(fitted(), tmp_path, {"cats": ","})


def test_a_section_that_disagrees_with_the_spec_or_its_files_refuses_to_load(
    tmp_path: Path,
) -> None:
    section, spec = _section(tmp_path)
    bad_spec = json.loads(json.dumps(spec))
    bad_spec["sparse"][0]["cardinality"] += 1
    with pytest.raises(ManifestError, match="'user' has cardinality"):
        RankerPreprocessor.from_preprocessing(section, bad_spec, tmp_path)
    with pytest.raises(ManifestError, match="do not match the feature spec"):
        RankerPreprocessor.from_preprocessing(section, {**spec, "dense": []}, tmp_path)
    bad = json.loads(json.dumps(section))
    bad["categorical"]["ad"]["buckets"] = 9
    with pytest.raises(ManifestError, match=r"'ad'.*9 buckets"):
        RankerPreprocessor.from_preprocessing(bad, spec, tmp_path)
    bad = json.loads(json.dumps(section))
    bad["dense"]["price"]["std"] = 0.0
    with pytest.raises(ManifestError, match="std is 0"):
        RankerPreprocessor.from_preprocessing(bad, spec, tmp_path)
    bad = json.loads(json.dumps(section))
    bad["id_convention"]["oov"] = 5
    with pytest.raises(ManifestError, match="id convention"):
        RankerPreprocessor.from_preprocessing(bad, spec, tmp_path)
    vocab = tmp_path / section["categorical"]["user"]["file"]
    pl.read_parquet(vocab).head(1).write_parquet(vocab)
    with pytest.raises(ManifestError, match="1 values, the manifest says vocab_size 3"):
        RankerPreprocessor.from_preprocessing(section, spec, tmp_path)
    vocab.unlink()
    with pytest.raises(ManifestError, match=r"vocabulary file .* is missing"):
        RankerPreprocessor.from_preprocessing(section, spec, tmp_path)


@pytest.mark.parametrize(
    ("shared", "field", "text"),
    [
        ({"price": "1.5"}, "price", "shared value: expected a number or null, got str"),
        ({"user": True}, "user", "shared value: expected a string, an integer or null"),
        ({"tags": ["t1", 2.5]}, "tags", "shared value: list element"),
        ({"ad": "\ud800"}, "ad", "shared value: not valid Unicode"),
        ({"colour": "red"}, "colour", "unknown feature 'colour'"),
        (["user", "a"], "shared", "must map feature names to values"),
    ],
)
def test_bad_shared_values_name_the_field(
    pre: RankerPreprocessor, shared: object, field: str, text: str
) -> None:
    rows = [{k: v for k, v in GOOD.items() if k not in shared}] * 2  # type: ignore[operator]
    with pytest.raises(RequestError, match=text) as info:
        pre.transform(rows, shared)  # type: ignore[arg-type]
    assert (info.value.field, info.value.row) == (field, None)
    assert pre.counters.snapshot()["requests"] == 0


def test_shared_values_ignored_keys_and_counters(pre: RankerPreprocessor) -> None:
    feeds = pre.transform(
        [{"ad": "x"}, {"ad": "y", "user": "b"}], {"user": "a", "request_id": 5, "price": 2}
    )
    merged = pre.transform(
        [{"ad": "x", "user": "a", "price": 2}, {"ad": "y", "user": "b", "price": 2}]
    )
    assert all(np.array_equal(feeds[k], merged[k]) for k in merged)
    snap = pre.counters.snapshot()
    assert snap["absent"] == {"tags": 4, "cats": 4}  # shared values are not absent


@pytest.mark.parametrize(
    ("column", "row", "text"),
    [
        ([7, 8, 2.0], 2, "got float"),  # ints first: the integer table is not used
        ([None, 7, True], 2, "got bool"),
        (["a", "b", ["a"]], 2, "got list"),  # unhashable: located by the checks
        (["a", 1.5, "b", False], 1, "got float"),  # found as unseen, then checked
        (["a", "zz", np.float64(3.0)], 2, "got float64"),
    ],
)
def test_vocabulary_lookups_reject_what_the_checks_reject(
    pre: RankerPreprocessor, column: list, row: int, text: str
) -> None:
    rows = [{"user": v} for v in column]
    with pytest.raises(RequestError, match=text) as info:
        pre.transform(rows)
    assert (info.value.field, info.value.row) == ("user", row)
