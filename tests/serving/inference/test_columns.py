"""Request rows -> columns (both the all-keys fast path and the general path) and the NumPy
FNV-1a 64 against the training pipeline's."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.preprocess import fnv1a64 as pipeline_fnv1a64
from serving.inference.columns import rows_to_columns
from serving.inference.errors import RequestError
from serving.inference.hashing import fnv1a64

FEATURES = ("a", "b", "c")


def test_full_rows_and_rows_with_gaps_give_the_same_columns() -> None:
    rows = [{"a": 1, "b": "x", "c": None}, {"c": [1], "a": 2.5, "b": True}]
    fast = rows_to_columns(rows, FEATURES, max_rows=10)
    slow = rows_to_columns(
        [{**r, "request_id": i} for i, r in enumerate(rows)],
        FEATURES,
        ignored=["request_id"],
        max_rows=10,
    )
    assert fast.values == slow.values == {"a": [1, 2.5], "b": ["x", True], "c": [None, [1]]}
    assert fast.absent == slow.absent == {"a": 0, "b": 0, "c": 0}
    gaps = rows_to_columns([{"a": 1}, {"b": 2, "c": 3}], FEATURES, max_rows=10)
    assert gaps.values == {"a": [1, None], "b": [None, 2], "c": [None, 3]}
    assert gaps.absent == {"a": 1, "b": 1, "c": 1}


def test_an_unknown_key_in_place_of_a_feature_is_found() -> None:
    rows = [{"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "colour": 3}]  # same key count
    with pytest.raises(RequestError, match="unknown feature 'colour'") as info:
        rows_to_columns(rows, FEATURES, max_rows=10)
    assert (info.value.field, info.value.row) == ("colour", 1)


def test_fnv1a64_equals_the_training_pipeline() -> None:
    rng = np.random.default_rng(0)
    alphabet = [*"abcXYZ019 -_|", "é", "ß", "日", "本", "🙂", "\x00"]
    values = ["", "a", "a" * 300]
    values += ["".join(rng.choice(alphabet, rng.integers(0, 40))) for _ in range(2000)]
    expected = pipeline_fnv1a64(pl.Series(values, dtype=pl.Utf8))
    got = fnv1a64(values)
    assert got.dtype == np.uint64 and np.array_equal(got, expected)
    assert fnv1a64([]).shape == (0,)
    assert int(fnv1a64([""])[0]) == 0xCBF29CE484222325  # the offset basis


def test_shared_values_and_features_no_row_has_stay_one_value() -> None:
    rows = [{"a": 1, "id": "r1"}, {"a": 2, "id": "r2"}]
    for given in (rows, [{**rows[0], "b": 5}, rows[1]]):  # same keys, then row by row
        cols = rows_to_columns(given, FEATURES, shared={"b": 9}, ignored=["id"], max_rows=10)
        assert cols.values["a"] == [1, 2] and cols.shared["c"] is None
        assert cols.absent == {"a": 0, "b": 0, "c": 2}
        assert cols.column("b") == [9, 9] if "b" in cols.shared else cols.column("b") == [5, 9]
        assert cols.column("c") == [None, None]
    assert (
        "b" in rows_to_columns(rows, FEATURES, shared={"b": 9}, ignored=["id"], max_rows=9).shared
    )
    with pytest.raises(RequestError, match="unknown feature 'id'") as info:
        rows_to_columns(rows, FEATURES, max_rows=10)  # not ignored: the first row's key
    assert (info.value.field, info.value.row) == ("id", 0)
    with pytest.raises(RequestError, match="unknown feature 'z'") as info:
        rows_to_columns(rows, FEATURES, shared={"z": 1}, ignored=["id"], max_rows=10)
    assert (info.value.field, info.value.row) == ("z", None)
    odd = [{"a": 1, "id": 1}, {"a": 1, "b": 2}]  # same key count, another key set
    with pytest.raises(RequestError, match="unknown feature 'id'"):
        rows_to_columns(odd, FEATURES, max_rows=10)
    assert rows_to_columns(odd, FEATURES, ignored=["id"], max_rows=10).absent["b"] == 1
