"""Tests of recsys.data.history: leakage-free per-event histories."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.history import build_histories
from recsys.types import DataError


def _brute_force(frame: pl.DataFrame, max_len: int) -> list[list[int]]:
    """For each row: the user's items with a strictly smaller timestamp, ordered by
    (timestamp, _row), the last max_len of them."""
    rows = frame.to_dicts()
    out = []
    for r in rows:
        earlier = [
            e for e in rows if e["user"] == r["user"] and e["ts"] < r["ts"]
        ]  # never the same timestamp, never the row itself
        earlier.sort(key=lambda e: (e["ts"], e["_row"]))
        out.append([e["item"] for e in earlier][-max_len:] if earlier else [])
    return out


def _random_frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "user": rng.integers(0, 12, n),
            "item": rng.integers(0, 1000, n),
            "ts": rng.integers(0, 60, n),  # many ties within a user
            "_row": np.arange(n),
            "label": rng.random(n),
        }
    )
    # file order is not time order
    return frame.sample(fraction=1.0, shuffle=True, seed=seed)


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_histories_match_brute_force_strictly_earlier(max_len: int) -> None:
    frame = _random_frame()
    out = build_histories(frame, "user", "item", "ts", max_len=max_len)
    assert out.schema["history"] == pl.List(pl.Int64)
    assert out.columns == [*frame.columns, "history"]
    assert out.drop("history").equals(frame)  # rows in the same order, columns untouched
    assert out["history"].to_list() == _brute_force(frame, max_len)
    assert out["history"].list.len().max() <= max_len


def test_no_leakage_every_history_item_is_from_an_earlier_event() -> None:
    frame = _random_frame(seed=3)
    out = build_histories(frame, "user", "item", "ts", max_len=50)
    # (user, item) -> earliest timestamp it occurs at; each history item must occur earlier
    first = {}
    for r in frame.sort("ts").to_dicts():
        first.setdefault((r["user"], r["item"]), r["ts"])
    for r in out.to_dicts():
        for item in r["history"]:
            assert first[(r["user"], item)] < r["ts"]
        assert len(r["history"]) == min(
            50, frame.filter((pl.col("user") == r["user"]) & (pl.col("ts") < r["ts"])).height
        )


def test_ties_are_excluded_and_ordered_by_file_order() -> None:
    frame = pl.DataFrame(
        {
            "user": [7, 7, 7, 7, 7, 8],
            "item": [1, 2, 3, 4, 5, 6],
            "ts": [10, 10, 20, 20, 30, 10],
            "_row": [1, 0, 2, 3, 4, 5],  # item 2 was logged before item 1
        }
    )
    out = build_histories(frame, "user", "item", "ts", max_len=10)["history"].to_list()
    assert out == [[], [], [2, 1], [2, 1], [2, 1, 3, 4], []]
    # max_len keeps the most recent ones, oldest first
    out = build_histories(frame, "user", "item", "ts", max_len=3)["history"].to_list()
    assert out[4] == [1, 3, 4]
    # without an order column, ties inside a history follow the row position
    out = build_histories(frame.drop("_row"), "user", "item", "ts", order=None)["history"]
    assert out.to_list()[4] == [1, 2, 3, 4]


def test_truncation_keeps_the_latest_items() -> None:
    n = 30
    frame = pl.DataFrame({"user": [0] * n, "item": list(range(100, 100 + n)), "ts": list(range(n))})
    out = build_histories(frame, "user", "item", "ts", order=None, max_len=5)["history"]
    assert out.to_list()[0] == []
    assert out.to_list()[3] == [100, 101, 102]
    assert out.to_list()[-1] == [124, 125, 126, 127, 128]


def test_datetime_timestamps_string_users_and_empty_frame() -> None:
    frame = pl.DataFrame(
        {"user": ["a", "b", "a"], "item": [1, 2, 3], "ts": [5, 1, 9]},
        schema_overrides={"item": pl.Int32},
    ).with_columns(pl.from_epoch("ts", time_unit="s"))
    out = build_histories(frame, "user", "item", "ts", order=None)
    assert out["history"].to_list() == [[], [], [1]]
    assert out.schema["history"] == pl.List(pl.Int64)
    empty = build_histories(frame.clear(), "user", "item", "ts", order=None)
    assert empty.height == 0 and empty.schema["history"] == pl.List(pl.Int64)


def test_bad_input_is_reported() -> None:
    frame = pl.DataFrame({"user": [1, 1], "item": [1, None], "ts": [1, 2]})
    with pytest.raises(DataError, match=r"field item: 1 null value.*row 1"):
        build_histories(frame, "user", "item", "ts")
    with pytest.raises(DataError, match="field when: missing column"):
        build_histories(frame, "user", "item", "when")
    with pytest.raises(DataError, match="integer indices"):
        build_histories(frame.with_columns(pl.col("item").cast(pl.Utf8)), "user", "item", "ts")
    with pytest.raises(ValueError, match="max_len"):
        build_histories(frame, "user", "item", "ts", max_len=0)
    with pytest.raises(ValueError, match="already exists"):
        build_histories(frame.with_columns(history=pl.lit(1)), "user", "item", "ts")
