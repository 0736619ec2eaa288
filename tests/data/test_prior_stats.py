"""Point-in-time history features: only strictly earlier events count, smoothed to the train
rate, written into the raw files before preprocessing; bad settings are named."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from recsys.data.prepared import prepare
from recsys.data.preprocess import PreprocessConfig
from recsys.data.prior_stats import add_prior_stats, prior_stat_columns, prior_stats_frame
from recsys.data.source import ROW_COLUMN, ReadReport
from recsys.data.split import SplitConfig
from recsys.types import DataError, RawSchema

SCHEMA = RawSchema(labels=("click",), sparse=("user", "item"), timestamp="ts")


def events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "click": [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
            "user": ["a", "a", "a", "b", None, "a"],
            "item": ["x", "y", "x", "x", "y", "z"],
            "ts": [10, 20, 20, 5, 30, 40],
            ROW_COLUMN: [0, 1, 2, 3, 4, 5],
        }
    )


def test_only_strictly_earlier_events_count() -> None:
    stats = prior_stats_frame(events().lazy(), SCHEMA, ["user"], {"click": 0.5}, smoothing=2.0)
    by_row = {r[ROW_COLUMN]: r for r in stats.to_dicts()}
    n = [math.expm1(by_row[i]["user_prior_log_count"]) for i in range(6)]
    # user a: ts 10 (nothing before), ts 20 twice (only ts 10 before: same second unseen),
    # ts 40 (three before); b alone; a missing user has no history
    assert n == pytest.approx([0, 1, 1, 0, 0, 3])
    rate = [by_row[i]["user_prior_click_rate"] for i in range(6)]
    assert rate[0] == rate[3] == rate[4] == pytest.approx(0.5)  # the base rate
    assert rate[1] == rate[2] == pytest.approx((1 + 2 * 0.5) / (1 + 2))
    assert rate[5] == pytest.approx((1 + 0 + 1 + 2 * 0.5) / (3 + 2))


def test_bad_settings_are_named(tmp_path: Path) -> None:
    lazy = events().lazy()
    with pytest.raises(DataError, match=r"\['clicks'\], which are not sparse columns"):
        prior_stats_frame(lazy, SCHEMA, ["clicks"], {"click": 0.5}, 1.0)
    no_time = RawSchema(labels=("click",), sparse=("user",))
    with pytest.raises(DataError, match="needs a timestamp"):
        prior_stats_frame(lazy, no_time, ["user"], {"click": 0.5}, 1.0)
    with pytest.raises(ValueError, match="prior_smoothing"):
        PreprocessConfig(prior_stats=("user",), prior_smoothing=-1)
    with pytest.raises(ValueError, match="list of columns"):
        PreprocessConfig(prior_stats="user")  # type: ignore[arg-type]
    path = tmp_path / "part.parquet"
    events().write_parquet(path)
    with pytest.raises(DataError, match="prior_smoothing"):
        add_prior_stats([path], SCHEMA, ["user"], {"click": 0.5}, -1.0)
    assert pl.read_parquet(path).equals(events())  # nothing written


class Events:
    """A raw source of :func:`events` (many more rows, in two chunks)."""

    name = "events"
    schema = SCHEMA

    def __init__(self) -> None:
        self.report = ReadReport()

    def iter_chunks(self):
        frame = pl.concat([events().with_columns(pl.col("ts") + 100 * k) for k in range(50)])
        frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_COLUMN))
        yield frame.head(150)
        yield frame.tail(150)

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


def test_prepare_adds_them_as_standardized_dense_features(tmp_path: Path) -> None:
    config = PreprocessConfig(prior_stats=("user", "item"))
    data = prepare(Events(), tmp_path / "ds", config, SplitConfig(kind="temporal"))
    expected = prior_stat_columns(["user", "item"], ["click"])
    assert list(data.spec.dense) == expected
    assert data.manifest["raw_schema"]["dense"] == expected
    assert data.manifest["preprocess"]["prior_stats"] == ["user", "item"]
    train = pl.read_parquet(
        [tmp_path / "ds" / f for f in data.manifest["splits"]["train"]["files"]]
    )
    assert train.height > 0
    # the prepared set is reused as is with the same settings, rebuilt with others
    again = prepare(Events(), tmp_path / "ds", config, SplitConfig(kind="temporal"))
    assert again.manifest["created_at"] == data.manifest["created_at"]
    plain = PreprocessConfig()
    assert plain.to_dict() == PreprocessConfig.from_dict(plain.to_dict()).to_dict()
    assert "prior_stats" not in plain.to_dict()  # old data sets keep their fingerprint
    assert PreprocessConfig.from_dict(config.to_dict()) == config
