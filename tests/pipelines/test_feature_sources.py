"""The follow history from the backend to a training row: follows, unfollows and blocks are
logged with their time, the export writes the log beside its parts, and the feature store's
training set reads each impression's follow state as of its time, where the export's own
column is as of the export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipelines.feature_sources import export_inputs, write_feature_data
from pipelines.feature_sources.cli import main as sources_main
from pipelines.social_events import MANIFEST, export_events
from recsys.features.training import FeastSocialSource
from tests.pipelines.social_traffic import PASSWORD, T0, make_backend


@pytest.fixture(scope="module")
def history_export(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("history")
    backend, clock = make_backend(folder / "backend")
    acc, act = backend.accounts, backend.interactions
    ana, ben, cy = (acc.register(n, PASSWORD).user.id for n in ("ana", "ben", "cyd"))
    acc.follow(ana, ben)  # T0
    acc.follow(cy, ben)
    post = backend.posts.create(ben, caption="hello", topic="cats")["id"]

    def seen(t: int) -> None:
        clock.set(T0 + t)
        act.impressions(ana, [{"post_id": post, "dwell_ms": 100}])

    seen(50)  # following
    clock.set(T0 + 100)
    acc.unfollow(ana, ben)
    seen(120)  # not following
    clock.set(T0 + 300)
    acc.follow(ana, ben)
    seen(310)  # following again
    clock.set(T0 + 400)
    acc.unfollow(ana, ben)  # unfollow and refollow in the same second: the later one holds
    acc.follow(ana, ben)
    seen(400)
    clock.set(T0 + 500)
    acc.block(ben, cy)  # removes cy's follow
    clock.set(T0 + 600)
    acc.unfollow(ana, ben)
    seen(650)  # not following (the export says the same: the graph's current state)
    out = folder / "export"
    summary = export_events(backend.storage.metadata, out, history=True)
    backend.close()
    return {"out": out, "ids": (ana, ben, cy), "summary": summary, "folder": folder}


def test_the_export_writes_the_follow_log(history_export: dict) -> None:
    ana, ben, cy = (str(i) for i in history_export["ids"])
    follows = pl.read_parquet(history_export["out"] / "follows.parquet")
    assert follows.columns == ["user_id", "author_id", "ts", "seq", "following"]
    rows = [
        (r["user_id"], r["author_id"], r["ts"] - T0, r["following"])
        for r in follows.iter_rows(named=True)
    ]
    assert rows == [
        (ana, ben, 0.0, True),
        (cy, ben, 0.0, True),
        (ana, ben, 100.0, False),
        (ana, ben, 300.0, True),
        (ana, ben, 400.0, False),
        (ana, ben, 400.0, True),
        (cy, ben, 500.0, False),
        (ana, ben, 600.0, False),
    ]
    assert follows["seq"].is_sorted() and follows["seq"].n_unique() == follows.height
    posts = pl.read_parquet(history_export["out"] / "posts.parquet")
    assert posts.select("author_id", "topic", "post_length").rows() == [(ben, "cats", 5)]
    manifest = json.loads((history_export["out"] / MANIFEST).read_text())
    assert manifest["history"] == {"follows.parquet": 8, "posts.parquet": 1}


def test_training_rows_read_the_follow_state_as_of_each_impression(
    history_export: dict, tmp_path: Path
) -> None:
    tables, labels = export_inputs(history_export["out"])
    write_feature_data(tables, labels, tmp_path / "features")
    rows = pl.concat(list(FeastSocialSource(tmp_path / "features").iter_chunks()))
    ana = str(history_export["ids"][0])
    exported = pl.read_parquet(history_export["out"] / "part-00000.parquet")
    assert rows["timestamp"].to_list() == exported["timestamp"].to_list()
    at = {
        r["timestamp"] - T0: r for r in rows.filter(pl.col("user_id") == ana).iter_rows(named=True)
    }
    assert {t: r["is_following"] for t, r in at.items()} == {
        50: "1",
        120: "0",
        310: "1",
        400: "1",
        650: "0",
    }
    # the export's column is the graph at export time: ana follows nobody by then
    assert set(exported.filter(pl.col("user_id") == ana)["is_following"]) == {"0"}
    # ben's followers as of each impression: ana and cy, cy alone, both, both, ana gone
    followers = [
        round(float(pl.Series([r["author_followers_log"]]).exp()[0] - 1)) for r in at.values()
    ]
    assert followers == [2, 1, 2, 2, 0]
    ages = exported.filter(pl.col("user_id") == ana)["post_age_hours"].to_list()
    assert [r["post_age_hours"] for r in at.values()] == pytest.approx(ages, abs=1e-9)


def test_the_sources_job_reads_an_export(history_export: dict, tmp_path: Path) -> None:
    out = tmp_path / "job"
    result = sources_main(
        ["export", f"export_dir={history_export['out']}", f"out={out}", "apply=false"]
    )
    assert result is not None and result.labels == 5 and not result.applied
    assert sorted(p.name for p in (out / "sources").iterdir()) == sorted(
        f"{n}.parquet"
        for n in (
            "posts",
            "users",
            "follow_pairs",
            "author_followers",
            "user_follows",
            "user_activity",
            "author_posting",
        )
    )
    bare = tmp_path / "bare"  # an export without its history
    shutil.copytree(history_export["out"], bare, ignore=shutil.ignore_patterns("follows.parquet"))
    with pytest.raises(SystemExit, match="follow history not found"):
        sources_main(["export", f"export_dir={bare}", f"out={tmp_path / 'x'}"])
    with pytest.raises(SystemExit, match="unknown origin"):
        sources_main(["kafka", f"out={out}"])
