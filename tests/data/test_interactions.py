"""The per-user chronological split, id maps and interaction matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.data.interactions import (
    IdMap,
    InteractionMatrix,
    assign_per_user_split,
    per_user_chronological_split,
    per_user_split_sizes,
)
from recsys.data.readers.movielens import MovieLensReader


def _frame() -> pl.DataFrame:
    """Users a (10 rows, tie at the end), b (4 rows), c (5 rows, one timestamp), d (20 rows).

    Rows are interleaved and ``_row`` is not the frame position, so the split must use it.
    """
    a_t = [5, 1, 3, 3, 2, 9, 9, 7, 4, 6]
    rows = [("a", f"a{r}", t, r) for r, t in enumerate(a_t)]
    rows += [("b", f"b{r}", 100 - r, 20 + r) for r in range(4)]
    rows += [("c", f"c{r}", 7, 30 + r) for r in range(5)]
    rows += [("d", f"d{r}", 1000 + r, 40 + r) for r in range(20)]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    u, i, t, r = zip(*rows)
    return pl.DataFrame({"user": u, "item": i, "ts": t, "_row": r, "rating": [1.0] * len(u)})


def _items(frame: pl.DataFrame, user: str) -> list[str]:
    return frame.filter(pl.col("user") == user).sort("ts", "_row")["item"].to_list()


def test_split_rule_on_a_hand_built_frame() -> None:
    frame = _frame()
    s = per_user_chronological_split(frame, "user", "item", "ts")
    # a sorted by (ts, _row): a1 a4 a2 a3 a8 a0 a9 a7 | a5 | a6 -- the tie at ts 9 keeps _row
    assert _items(s["train"], "a") == ["a1", "a4", "a2", "a3", "a8", "a0", "a9", "a7"]
    assert _items(s["valid"], "a") == ["a5"]
    assert _items(s["test"], "a") == ["a6"]
    # b has fewer than 5 interactions: all train
    assert sorted(_items(s["train"], "b")) == ["b0", "b1", "b2", "b3"]
    assert "b" not in s["valid"]["user"] and "b" not in s["test"]["user"]
    # c: 5 rows on one timestamp -> 4 / 0 / 1 in _row order
    assert _items(s["train"], "c") == ["c0", "c1", "c2", "c3"]
    assert _items(s["test"], "c") == ["c4"]
    # d: 20 rows -> 16 / 2 / 2, the latest last
    assert _items(s["valid"], "d") == ["d16", "d17"]
    assert _items(s["test"], "d") == ["d18", "d19"]


def test_ties_follow_the_order_column_not_the_frame_position() -> None:
    frame = _frame().with_columns(
        pl.when(pl.col("user") == "a").then(-pl.col("_row")).otherwise(pl.col("_row")).alias("o")
    )
    s = per_user_chronological_split(frame, "user", "item", "ts", order="o")
    assert _items(s["test"], "a") == ["a5"]  # reversed order column flips the tie at ts 9
    positional = per_user_chronological_split(frame.sort("_row"), "user", "item", "ts", None)
    assert _items(positional["test"], "a") == ["a6"]  # order=None: input order breaks ties


def test_split_partitions_the_frame_and_keeps_columns_and_row_order() -> None:
    frame = _frame()
    s = per_user_chronological_split(frame, "user", "item", "ts")
    assert sum(part.height for part in s.values()) == frame.height
    assert all(part.columns == frame.columns for part in s.values())
    together = pl.concat(list(s.values())).sort("_row")
    assert together.equals(frame.sort("_row"))
    for part in s.values():  # each split is a subsequence of the input
        pos = frame.with_row_index("pos").join(part, on="_row", how="semi")["pos"]
        assert pos.is_sorted()
    codes = assign_per_user_split(frame, "user", "ts")
    assert codes.dtype == pl.Int8 and codes.len() == frame.height


def test_every_eligible_user_has_a_test_item_even_without_a_test_fraction() -> None:
    frame = _frame()
    for fractions in [(0.8, 0.1, 0.1), (0.9, 0.1, 0.0), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0)]:
        s = per_user_chronological_split(frame, "user", "item", "ts", fractions=fractions)
        assert set(s["test"]["user"]) == {"a", "c", "d"}, fractions
        assert set(s["train"]["user"]) == {"a", "b", "c", "d"}
    s = per_user_chronological_split(frame, "user", "item", "ts", fractions=(0.9, 0.1, 0.0))
    assert _items(s["test"], "c") == ["c4"] and s["valid"].filter(pl.col("user") == "c").is_empty()
    s = per_user_chronological_split(frame, "user", "item", "ts", min_interactions=11)
    assert s["test"]["user"].to_list() == ["d", "d"]


def _reference_sizes(n: int, f0_tenths: int, f01_tenths: int, min_n: int) -> tuple[int, ...]:
    if n < min_n:
        return (n, 0, 0)
    train, train_valid = n * f0_tenths // 10, n * f01_tenths // 10
    if train_valid == n:
        train, train_valid = (train - 1 if train_valid == train else train), n - 1
    return (train, train_valid - train, n - train_valid)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.9, 0.1, 0.0)])
def test_split_sizes_match_the_rule_and_the_frame(fractions: tuple[float, ...]) -> None:
    tenths = round(fractions[0] * 10), round((fractions[0] + fractions[1]) * 10)
    for n in range(1, 41):
        assert per_user_split_sizes(n, fractions) == _reference_sizes(n, *tenths, 5), n
    assert per_user_split_sizes(9) == (7, 1, 1)
    assert per_user_split_sizes(29, (0.29, 0.71, 0.0)) == (8, 20, 1)  # floor(0.29*29)=8
    n = np.arange(1, 41).repeat(np.arange(1, 41))
    frame = pl.DataFrame({"u": n.astype(str), "i": "x", "t": 0, "_row": np.arange(n.size)})
    s = per_user_chronological_split(frame, "u", "i", "t", fractions=fractions)
    counts = {k: dict(v.group_by("u").len().iter_rows()) for k, v in s.items()}
    for size in range(1, 41):
        got = tuple(counts[k].get(str(size), 0) for k in ("train", "valid", "test"))
        assert got == per_user_split_sizes(size, fractions)


def test_split_errors() -> None:
    frame = _frame()
    with pytest.raises(ValueError, match=r"no column\(s\) \['when'\]"):
        per_user_chronological_split(frame, "user", "item", "when")
    with pytest.raises(ValueError, match="sum to 1"):
        per_user_chronological_split(frame, "user", "item", "ts", fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="min_interactions"):
        per_user_chronological_split(frame, "user", "item", "ts", min_interactions=0)
    nulls = frame.with_columns(pl.when(pl.col("_row") == 3).then(None).otherwise("ts").alias("ts"))
    with pytest.raises(ValueError, match="'ts' has 1 null"):
        per_user_chronological_split(nulls, "user", "item", "ts")


def test_id_map_round_trip_and_unknown_ids() -> None:
    ids = IdMap.from_values(["b", "a", "c", "a", None])
    assert ids.ids == ["a", "b", "c"] and len(ids) == 3 and "b" in ids and "z" not in ids
    np.testing.assert_array_equal(ids.to_index(["c", "a"]), [2, 0])
    assert ids.to_index(["c", "a"]).dtype == np.int64
    np.testing.assert_array_equal(ids.to_index(["a", "zz", None], strict=False), [0, -1, -1])
    with pytest.raises(KeyError, match="unknown id 'zz' at position 1"):
        ids.to_index(["a", "zz"])
    assert ids.from_index(np.array([2, 0])) == ["c", "a"]
    with pytest.raises(IndexError, match="index 3 at position 1"):
        ids.from_index([0, 3])
    with pytest.raises(IndexError, match="index -1"):
        ids.from_index([-1])
    with pytest.raises(ValueError, match="unique"):
        IdMap(["a", "a"])
    assert IdMap(["z", "y"]).to_index(["y"]).tolist() == [1]  # constructor order is kept


def test_interaction_matrix_is_binary_users_by_items() -> None:
    frame = pl.DataFrame({"u": ["x", "y", "x", "x"], "i": ["2", "1", "2", "3"]})
    m = InteractionMatrix.from_frame(frame, "u", "i")
    assert m.shape == (2, 3)
    csr = m.csr(frame)
    assert csr.dtype == np.float32 and csr.has_sorted_indices
    np.testing.assert_array_equal(csr.toarray(), [[0, 1, 1], [1, 0, 0]])  # duplicate -> 1
    np.testing.assert_array_equal(m.csr(frame.head(1)).toarray(), [[0, 1, 0], [0, 0, 0]])
    with pytest.raises(KeyError, match="column 'i': unknown id '9'"):
        m.csr(pl.DataFrame({"u": ["x"], "i": ["9"]}))


def test_ml100k_split(ml100k: Path) -> None:
    frame = pl.concat(list(MovieLensReader(ml100k).iter_chunks()))
    s = per_user_chronological_split(frame, "user_id", "item_id", "timestamp")
    assert {k: v.height for k, v in s.items()} == {"train": 79619, "valid": 9942, "test": 10439}
    for part in s.values():
        assert part["user_id"].n_unique() == 943  # every ML-100K user has >= 20 ratings
    # Chronology per user: the last train key precedes the first valid key, and so on.
    key = pl.struct("timestamp", "_row")
    last = {k: v.group_by("user_id").agg(key.sort().last().alias(k)) for k, v in s.items()}
    first = {k: v.group_by("user_id").agg(key.sort().first().alias(k)) for k, v in s.items()}
    for before, after in (("train", "valid"), ("valid", "test")):
        joined = last[before].join(first[after], on="user_id")
        assert joined.height == 943
        lo, hi = joined[before].struct.unnest(), joined[after].struct.unnest()
        ok = (lo["timestamp"] < hi["timestamp"]) | (
            (lo["timestamp"] == hi["timestamp"]) & (lo["_row"] < hi["_row"])
        )
        assert ok.all()
    m = InteractionMatrix.from_frame(frame)
    assert m.shape == (943, 1682)
    train = m.csr(s["train"])
    assert train.nnz == 79619  # ML-100K has no repeated (user, item) pair
