"""The request-time preprocessing equals the training pipeline on real prepared data sets:
the same raw rows through FittedPreprocessor.transform + the batch loader and through
RankerPreprocessor give equal ids and lengths and bit-equal float32 dense features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
