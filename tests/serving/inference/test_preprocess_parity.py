"""The request-time preprocessing equals the training pipeline on real prepared data sets:
the same raw rows through FittedPreprocessor.transform + the batch loader and through
RankerPreprocessor give equal ids and lengths and bit-equal float32 dense features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.data.prepared import PreparedDataset, prepare
from recsys.data.preprocess import PreprocessConfig
from recsys.data.readers.movielens import MovieLensReader
from recsys.data.split import SplitConfig
from tests.serving.inference.conftest import (
    assert_same_feeds,
    perturb,
    raw_rows,
    request_preprocessor,
    training_feeds,
)


@pytest.fixture(scope="module")
def movielens(ml100k: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("ml100k") / "prepared"
    config = PreprocessConfig(min_freq=3)
    return prepare(MovieLensReader(ml100k), out, config, SplitConfig(kind="temporal"))


def check_parity(
    ds: PreparedDataset,
    tmp: Path,
    rows: list[dict[str, Any]],
    separators: dict[str, str] | None = None,
) -> None:
    pre = ds.preprocessor()
    ours = request_preprocessor(pre, tmp / "export", separators)
    assert_same_feeds(ours.transform(rows), training_feeds(pre, rows, tmp / "ref", separators))
    for row in rows[:6]:  # batches of 1
        expected = training_feeds(pre, [row], tmp / "ref", separators)
        assert_same_feeds(ours.transform([row]), expected)


def test_social_rows_match_the_training_pipeline(social: PreparedDataset, tmp_path: Path) -> None:
    pre = social.preprocessor()
    rows = perturb(
        raw_rows(social, 500, seed=1), pre, seed=2, int_features=["user_id", "author_id"]
    )
    assert any(isinstance(r.get("user_id"), int) for r in rows)
    check_parity(social, tmp_path, rows)


def test_social_rows_with_every_dense_value_missing(
    social: PreparedDataset, tmp_path: Path
) -> None:
    rows = [{"user_id": "3", "topic": None}, {"post_age_hours": float("nan")}, {}]
    check_parity(social, tmp_path, rows)


def test_toy_multi_hot_vocabulary_lists(toy_dataset: PreparedDataset, tmp_path: Path) -> None:
    pre = toy_dataset.preprocessor()
    rows = perturb(raw_rows(toy_dataset, 400, seed=3), pre, seed=4, int_features=["user"])
    rows[0]["tags"], rows[1]["tags"], rows[2]["tags"] = [], None, [None, None]
    rows[3]["tags"] = ("t1", 5, "t1")
    check_parity(toy_dataset, tmp_path, rows)


def test_ctr_table_hashed_and_separator_strings(
    ctr: tuple[PreparedDataset, dict[str, str]], tmp_path: Path
) -> None:
    ds, separators = ctr
    pre = ds.preprocessor()
    assert {m.kind for m in pre.categorical.values()} == {"vocab", "hash"}
    rows = perturb(raw_rows(ds, 400, seed=5), pre, seed=6, int_features=["ad"])
    for i, row in enumerate(rows[:60]):  # the raw reader's form: one separated string
        for c in ("tags", "cats"):
            if isinstance(row.get(c), list) and None not in row[c]:
                row[c] = "|".join(row[c]) if i % 3 else "||" + "|".join(row[c]) + "|"
    rows[60]["tags"], rows[61]["cats"], rows[62]["tags"] = "", "|", [7, "t3", None]
    rows[63]["ad"] = "ünïcödé 日本"
    assert any(isinstance(r.get("tags"), str) for r in rows)
    check_parity(ds, tmp_path, rows, separators)


def test_movielens_100k_rows_match(movielens: PreparedDataset, tmp_path: Path) -> None:
    pre = movielens.preprocessor()
    rows = perturb(
        raw_rows(movielens, 600, seed=7), pre, seed=8, int_features=["user_id", "item_id", "age"]
    )
    check_parity(movielens, tmp_path, rows)


USER_LEVEL = ("user_id", "user_follow_count_log", "country", "age_bucket", "user_activity")


def check_shared_parity(
    ds: PreparedDataset,
    tmp: Path,
    rows: list[dict[str, Any]],
    shared: dict[str, Any],
    separators: dict[str, str] | None = None,
) -> None:
    """``transform(rows, shared)`` equals the training pipeline on the merged rows (a row's
    own key winning), for the whole batch and for batches of 1."""
    pre = ds.preprocessor()
    ours = request_preprocessor(pre, tmp / "export", separators)
    merged = [{**shared, **r} for r in rows]
    expected = training_feeds(pre, merged, tmp / "ref", separators)
    assert_same_feeds(ours.transform(rows, shared), expected)
    assert_same_feeds(ours.transform(merged), expected)
    for row in rows[:4]:
        one = training_feeds(pre, [{**shared, **row}], tmp / "ref", separators)
        assert_same_feeds(ours.transform([row], shared), one)


def feature_rows(ds: PreparedDataset, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` raw rows holding the raw features only."""
    s = ds.preprocessor().schema
    names = (*s.dense, *s.sparse, *s.multi)
    return [{k: r[k] for k in names} for r in raw_rows(ds, n, seed)]


def _split_user(rows: list[dict[str, Any]], user: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in user} for r in rows]


def test_social_shared_user_features_on_every_path(social: PreparedDataset, tmp_path: Path) -> None:
    pre = social.preprocessor()
    rows = feature_rows(social, 300, seed=21)
    user = {k: rows[0][k] for k in USER_LEVEL}
    same_keys = _split_user(rows, user)  # every row the same keys: the columns gathered in C
    check_shared_parity(social, tmp_path / "a", same_keys, user)
    ints = [  # integer ids (the backend's form): the integer table; unseen ones too
        {**r, "post_id": int(r["post_id"]), "author_id": int(r["author_id"]) + (i % 7 == 0)}
        for i, r in enumerate(same_keys)
    ]
    ints[0]["post_id"] = None  # a column of ints that starts with null
    check_shared_parity(social, tmp_path / "b", ints, {**user, "user_id": int(user["user_id"])})
    awkward = perturb(rows, pre, seed=22, int_features=["user_id", "author_id", "post_id"])
    gaps = _split_user(awkward, user)  # absent keys, mixed types: row by row
    gaps[3]["country"] = "unseen-country"  # a row's own value wins over the shared one
    gaps[5]["user_follow_count_log"] = None
    check_shared_parity(social, tmp_path / "c", gaps, user)
    odd = {"user_id": None, "country": None, "user_follow_count_log": float("nan")}
    check_shared_parity(social, tmp_path / "d", same_keys, odd)  # missing shared values
    check_shared_parity(social, tmp_path / "e", same_keys, {})  # user features absent


def test_numpy_scalars_and_string_subclasses(social: PreparedDataset, tmp_path: Path) -> None:
    rows = feature_rows(social, 60, seed=23)
    user = {k: rows[0][k] for k in USER_LEVEL}
    cands = _split_user(rows, user)
    for i, r in enumerate(cands):
        r["post_id"] = np.int64(r["post_id"]) if i % 2 else int(r["post_id"])
        r["topic"] = np.str_(r["topic"]) if r["topic"] is not None and i % 3 else r["topic"]
        r["post_length"] = np.float32(r["post_length"]) if i % 4 == 0 else r["post_length"]
    shared = {**user, "user_id": np.int32(user["user_id"]), "country": np.str_(user["country"])}
    check_shared_parity(social, tmp_path, cands, shared)


def test_ctr_shared_multi_hot_and_hashed_values(
    ctr: tuple[PreparedDataset, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import serving.inference.preprocess as preprocess

    monkeypatch.setattr(preprocess, "HASH_CACHE_SIZE", 8)  # the hashed-id cache starts over
    ds, separators = ctr
    rows = perturb(raw_rows(ds, 200, seed=24), ds.preprocessor(), seed=25, int_features=["ad"])
    for shared in (
        {"ad": 17, "tags": "t1||t2|", "cats": ["c1", None, "c9"]},
        {"ad": None, "tags": None, "cats": []},
        {"ad": "ünïcödé", "tags": ["t3"], "price": 3},
    ):
        cands = [{k: v for k, v in r.items() if k not in shared} for r in rows]
        check_shared_parity(
            ds, tmp_path / str(len(list(tmp_path.iterdir()))), cands, shared, separators
        )
    check_shared_parity(ds, tmp_path / "own", rows, {"ad": "x", "tags": ["t1"]}, separators)
