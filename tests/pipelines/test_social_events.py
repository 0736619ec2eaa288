"""``pipelines.social_events``: the social backend's event log exported to Parquet in the schema
of the synthetic social data set, checked row by row on a hand-made log, then trained on through
``recsys train`` (the library's real entry point) from a larger log with a learnable pattern."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hydra.core.global_hydra import GlobalHydra

from pipelines.social_events import (
    MANIFEST,
    SCHEMA,
    ExportError,
    ExportSummary,
    export_events,
    main,
)
from recsys.data.synthetic.schema import SOCIAL_SCHEMA
from serving.social.backend import Backend, open_backend
from serving.social.clock import ManualClock
from serving.social.settings import settings_from_mapping
from tests.pipelines.social_traffic import PASSWORD, T0, make_backend, simulate


def read_export(out: Path) -> pl.DataFrame:
    manifest = json.loads((out / MANIFEST).read_text())
    return pl.concat([pl.read_parquet(out / f["name"]) for f in manifest["files"]])


# --- a hand-made log, every row checked -----------------------------------------------------------


def write_hand_log(backend: Backend, clock: ManualClock) -> tuple[dict[str, int], tuple[int, int]]:
    """Five users, two posts and 14 impressions whose labels and features are worked out by
    hand below (attribution window 3600 s, long dwell at 5000 ms); returns the user ids by name
    and the two post ids."""
    acc, posts, act = backend.accounts, backend.posts, backend.interactions
    profiles = {
        "alice": ("US", "18-24"),
        "bob": ("IN", "25-34"),
        "carol": ("", ""),
        "dave": ("BR", "35-44"),
        "eve": ("DE", "55+"),
    }
    ids = {
        name: acc.register(name, PASSWORD, country=c, age_bucket=a).user.id
        for name, (c, a) in profiles.items()
    }
    alice, bob, carol, dave, eve = (ids[n] for n in profiles)
    for follower, followee in ((alice, bob), (carol, bob), (dave, bob), (dave, carol)):
        acc.follow(follower, followee)
    p1 = posts.create(bob, caption="hello world", topic="cats")["id"]
    clock.set(T0 + 3600)
    p2 = posts.create(carol, caption="x" * 40, topic="news")["id"]

    def at(t: int) -> None:
        clock.set(T0 + t)

    at(7200)
    act.impressions(alice, [{"post_id": p1, "dwell_ms": 8000}, {"post_id": p2, "dwell_ms": 500}])
    at(7260)
    act.like(alice, p1)
    at(7270)
    act.comment(alice, p1, "nice")
    at(9000)
    act.impressions(bob, [{"post_id": p2, "dwell_ms": 5000}])
    at(9010)
    act.share(bob, p2)
    at(10_000)
    act.impressions(carol, [{"post_id": p1, "dwell_ms": 100}])
    at(10_100)
    act.impressions(carol, [{"post_id": p1, "dwell_ms": 200}])
    at(10_150)
    act.like(carol, p1)  # credited to carol's latest impression of p1 only
    at(10_200)
    act.like(bob, p1)  # bob never saw p1: unattributed
    at(10_801)
    act.save(alice, p2)  # 3601 s after alice's impression: outside the window
    for k in range(6):
        at(11_000 + 10 * k)
        act.impressions(dave, [{"post_id": (p1, p2)[k % 2], "dwell_ms": 0}])
    for k in range(3):
        at(12_000 + 10 * k)
        act.impressions(eve, [{"post_id": p2, "dwell_ms": 4999}])
    return ids, (p1, p2)


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The hand-made log (:func:`write_hand_log`) on an embedded backend, exported."""
    folder = tmp_path_factory.mktemp("hand")
    backend, clock = make_backend(folder / "backend")
    ids, (p1, p2) = write_hand_log(backend, clock)
    out = folder / "export"
    summary = export_events(
        backend.storage.metadata, out, long_dwell_ms=5000, attribution_window_s=3600
    )
    yield {
        "backend": backend,
        "summary": summary,
        "out": out,
        "folder": folder,
        "ids": ids,
        "posts": (p1, p2),
    }
    backend.close()


def test_schema_and_dtypes_are_what_the_loader_reads(hand: dict) -> None:
    frame = read_export(hand["out"])
    expected = [c for c in SOCIAL_SCHEMA.columns() if c not in SOCIAL_SCHEMA.aux]
    assert frame.columns == expected
    assert not any(c.startswith("p_") for c in frame.columns)
    assert dict(frame.schema) == SCHEMA
    assert all(frame.schema[c] == pl.Float32 for c in SOCIAL_SCHEMA.labels)
    assert all(frame.schema[c] == pl.Float64 for c in SOCIAL_SCHEMA.dense)
    assert all(frame.schema[c] == pl.Utf8 for c in SOCIAL_SCHEMA.sparse)
    assert frame.schema["timestamp"] == pl.Int64
    assert frame["timestamp"].is_sorted()
    # the library's configured reader takes the files as they are
    from recsys.data.readers.ctr_table import CtrTableReader

    reader = CtrTableReader(
        str(hand["out"] / "part-*.parquet"),
        labels=SOCIAL_SCHEMA.labels,
        dense=SOCIAL_SCHEMA.dense,
        sparse=SOCIAL_SCHEMA.sparse,
        timestamp="timestamp",
    )
    assert sum(c.height for c in reader.iter_chunks()) == 14
    assert reader.report.rows_skipped == 0


def test_rows_match_the_hand_worked_log(hand: dict) -> None:
    ids, (p1, p2) = hand["ids"], hand["posts"]
    alice, bob, carol = ids["alice"], ids["bob"], ids["carol"]
    rows = read_export(hand["out"]).to_dicts()
    assert len(rows) == 14

    def row(user, post, author, ts, labels, dense, sparse) -> dict:
        out = dict(zip(("like", "comment", "share", "save", "long_dwell"), labels))
        out.update(
            zip(
                ("post_age_hours", "author_followers_log", "user_follow_count_log", "post_length"),
                dense,
            )
        )
        keys = ("topic", "media_type", "country", "age_bucket", "user_activity", "is_following")
        out.update(zip(keys, sparse))
        out.update(user_id=str(user), post_id=str(post), author_id=str(author), timestamp=T0 + ts)
        return out

    expected = [
        # alice saw p1 (bob's, followed) and p2 at 7200; liked and commented p1 within 70 s.
        row(
            alice,
            p1,
            bob,
            7200,
            (1.0, 1.0, 0.0, 0.0, 1.0),
            (2.0, math.log1p(3), math.log1p(1), 11.0),
            ("cats", "text", "US", "18-24", "low", "1"),
        ),
        # her save of p2 came 3601 s later: outside the window; dwell 500 < 5000.
        row(
            alice,
            p2,
            carol,
            7200,
            (0.0, 0.0, 0.0, 0.0, 0.0),
            (1.0, math.log1p(1), math.log1p(1), 40.0),
            ("news", "text", "US", "18-24", "low", "0"),
        ),
        # bob follows nobody; dwell exactly 5000 is long; shared 10 s later.
        row(
            bob,
            p2,
            carol,
            9000,
            (0.0, 0.0, 1.0, 0.0, 1.0),
            (1.5, math.log1p(1), 0.0, 40.0),
            ("news", "text", "IN", "25-34", "low", "0"),
        ),
        # carol (no country or age given) saw p1 twice; the like counts for the later one.
        row(
            carol,
            p1,
            bob,
            10_000,
            (0.0, 0.0, 0.0, 0.0, 0.0),
            (10_000 / 3600, math.log1p(3), math.log1p(1), 11.0),
            ("cats", "text", None, None, "low", "1"),
        ),
        row(
            carol,
            p1,
            bob,
            10_100,
            (1.0, 0.0, 0.0, 0.0, 0.0),
            (10_100 / 3600, math.log1p(3), math.log1p(1), 11.0),
            ("cats", "text", None, None, "low", "1"),
        ),
    ]
    for got, want in zip(rows[:5], expected):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert got[key] == value, key
    # user_activity: impressions alice 2, bob 1, carol 2, dave 6, eve 3 -> the median (2) and
    # the 85th percentile (4.2) split low / medium / high.
    activity = {r["user_id"]: r["user_activity"] for r in rows}
    assert activity == {
        str(alice): "low",
        str(bob): "low",
        str(carol): "low",
        str(ids["dave"]): "high",
        str(ids["eve"]): "medium",
    }
    dave = [r for r in rows if r["user_id"] == str(ids["dave"])]
    assert [r["is_following"] for r in dave] == ["1"] * 6  # dave follows bob and carol
    assert {r["user_follow_count_log"] for r in dave} == {math.log1p(2)}
    assert all(r["long_dwell"] == 0.0 for r in rows[5:])  # dwell 0 and 4999


def test_summary_and_manifest(hand: dict) -> None:
    summary: ExportSummary = hand["summary"]
    assert summary.rows == 14 and summary.files == ("part-00000.parquet",)
    assert summary.events == {"comment": 1, "impression": 14, "like": 3, "save": 1, "share": 1}
    assert summary.unattributed_actions == 2
    assert summary.time_range == (T0 + 7200, T0 + 12_020)
    assert summary.after_seq == 0 and summary.last_seq == 20
    # windows still open at the last event (T0 + 12020): every impression after T0 + 8420
    assert summary.immature_rows == 12
    assert summary.out_of_order_rows == 0
    assert summary.label_rates == pytest.approx(
        {"like": 2 / 14, "comment": 1 / 14, "share": 1 / 14, "save": 0.0, "long_dwell": 2 / 14}
    )
    manifest = json.loads((hand["out"] / MANIFEST).read_text())
    assert manifest["format"] == "social_events/v1"
    assert manifest["rows"] == 14 and manifest["files"] == [
        {"name": "part-00000.parquet", "rows": 14}
    ]
    assert manifest["schema"] == {k: str(v) for k, v in SCHEMA.items()}
    assert manifest["raw_schema"]["labels"] == list(SOCIAL_SCHEMA.labels)
    assert (manifest["after_seq"], manifest["last_seq"]) == (0, 20)
    assert manifest["source"] == {"store": "SqlMetadataStore"}
    assert manifest["parameters"]["attribution_window_s"] == 3600.0
    assert manifest["activity_thresholds"] == pytest.approx([2.0, 4.2])
    assert "social_events: 14 rows in 1 file(s)" in summary.lines()[0]


def test_reexport_is_idempotent_and_parts_split_the_same_rows(hand: dict, tmp_path: Path) -> None:
    out, metadata = hand["out"], hand["backend"].storage.metadata
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = export_events(metadata, out, long_dwell_ms=5000, attribution_window_s=3600)
    assert again == hand["summary"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".export.")]  # no leftovers
    parts = export_events(
        metadata, tmp_path / "parts", long_dwell_ms=5000, attribution_window_s=3600, rows_per_file=4
    )
    assert parts.files == tuple(f"part-{i:05d}.parquet" for i in range(4))
    assert [pl.read_parquet(tmp_path / "parts" / f).height for f in parts.files] == [4, 4, 4, 2]
    assert read_export(tmp_path / "parts").equals(read_export(out))
    # a smaller export replaces the previous one as a whole (no stale part files left)
    export_events(metadata, tmp_path / "parts", long_dwell_ms=5000, attribution_window_s=3600)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        MANIFEST,
        "part-00000.parquet",
    ]


def test_after_seq_exports_the_rest_of_the_log(hand: dict, tmp_path: Path) -> None:
    metadata, ids = hand["backend"].storage.metadata, hand["ids"]
    events = [e for batch in metadata.iter_events() for e in batch]
    first_dave = min(e.seq for e in events if e.user_id == ids["dave"])
    rest = export_events(metadata, tmp_path / "rest", after_seq=first_dave - 1)
    assert (rest.after_seq, rest.last_seq, rest.rows) == (first_dave - 1, 20, 9)
    frame = read_export(tmp_path / "rest")
    assert set(frame["user_id"]) == {str(ids["dave"]), str(ids["eve"])}
    none_left = export_events(metadata, tmp_path / "none", after_seq=rest.last_seq)
    assert (none_left.rows, none_left.last_seq) == (0, 20)


def test_empty_log_writes_an_empty_typed_export(tmp_path: Path) -> None:
    backend, _ = make_backend(tmp_path / "backend")
    try:
        user = backend.accounts.register("solo", PASSWORD).user.id
        backend.posts.create(user, caption="nobody sees this")
        summary = export_events(backend.storage.metadata, tmp_path / "out")
    finally:
        backend.close()
    assert (summary.rows, summary.files, summary.label_rates) == (0, ("part-00000.parquet",), {})
    assert summary.time_range is None and summary.last_seq == 0 and summary.events == {}
    frame = pl.read_parquet(tmp_path / "out" / "part-00000.parquet")
    assert frame.height == 0 and dict(frame.schema) == SCHEMA
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["rows"] == 0


def test_bad_out_dir_and_parameters_are_refused(hand: dict, tmp_path: Path) -> None:
    metadata = hand["backend"].storage.metadata
    a_file = tmp_path / "file.parquet"
    a_file.write_text("not a folder")
    with pytest.raises(ExportError, match="not a folder"):
        export_events(metadata, a_file)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="refusing to replace"):
        export_events(metadata, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(ExportError, match="attribution_window_s"):
        export_events(metadata, tmp_path / "x", attribution_window_s=0)
    with pytest.raises(ExportError, match="after_seq"):
        export_events(metadata, tmp_path / "x", after_seq=-1)
    assert not (tmp_path / "x").exists()


def test_job_entry_point(hand: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = hand["folder"] / "backend"
    out = tmp_path / "job"
    summary = main(
        [f"backend.data_dir={data_dir}", f"out_dir={out}", "long_dwell_ms=5000", "after_seq=0"]
    )
    assert summary is not None and summary.rows == 14
    printed = capsys.readouterr().out
    assert f"social_events: 14 rows in 1 file(s) -> {out}" in printed
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["source"]["storage"] == "embedded"
    assert read_export(out).equals(read_export(hand["out"]))
    with pytest.raises(SystemExit, match="out_dir=DIR is required"):
        main([f"backend.data_dir={data_dir}"])
    with pytest.raises(SystemExit, match="no embedded backend database"):
        main([f"backend.data_dir={tmp_path / 'nowhere'}", f"out_dir={out}"])
    with pytest.raises(SystemExit, match="long_dwell_ms must be int"):
        main([f"backend.data_dir={data_dir}", f"out_dir={out}", "long_dwell_ms=soon"])


def test_job_exports_a_production_backend(
    hand: dict, tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The same hand-made log on PostgreSQL and Redis exports the same rows, through the job's
    entry point (``backend=production``: the store opened by the storage factory, unmigrated)."""
    from serving.social.storage.sql.testing import fresh_engine

    fresh_engine("postgresql", url=postgres_url).dispose()  # migrated, every table emptied
    values = {
        "storage": "production",
        "postgres_url": postgres_url,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "data_dir": str(tmp_path / "backend"),
        "rate_limits": {"enabled": False},
    }
    clock = ManualClock(T0)
    backend = open_backend(settings_from_mapping(values), clock)
    try:
        ids, posts = write_hand_log(backend, clock)
    finally:
        backend.close()
    assert (ids, posts) == (hand["ids"], hand["posts"])
    out = tmp_path / "pg"
    overrides = [f"backend.{k}={v}" for k, v in values.items() if k != "rate_limits"]
    summary = main(["backend=production", *overrides, f"out_dir={out}", "long_dwell_ms=5000"])
    assert summary is not None and summary.rows == 14
    assert summary.to_dict() == hand["summary"].to_dict()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["source"] == {"backend": "serving.social", "storage": "production"}
    assert read_export(out).equals(read_export(hand["out"]))


# --- a larger log with a pattern a model can learn, trained on ---------------------------------


@pytest.mark.slow
def test_a_model_trains_on_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend, clock = make_backend(tmp_path / "backend")
    try:
        simulate(backend, clock)
        out = tmp_path / "events"
        summary = export_events(backend.storage.metadata, out)
    finally:
        backend.close()
    assert summary.rows == 360 * 5
    assert all(0.05 < summary.label_rates[t] < 0.5 for t in SOCIAL_SCHEMA.labels)

    from recsys.cli.main import main as recsys_main

    monkeypatch.setenv("RECSYS_DATA_ROOT", str(tmp_path / "data_root"))
    monkeypatch.setenv("RECSYS_OUTPUT_ROOT", str(tmp_path / "outputs"))
    run_dir = tmp_path / "run"
    GlobalHydra.instance().clear()
    try:
        recsys_main(
            [
                "train",
                "experiment=multitask_social_tiny",
                "data=social_events",
                f"data.path={out}",
                "tracking.enabled=false",
                "trainer.max_epochs=10",
                "optimizer.lr=0.01",
                "trainer.batch_size=128",
                "trainer.eval_every_steps=null",
                f"hydra.run.dir={run_dir}",
            ]
        )
    finally:
        GlobalHydra.instance().clear()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"]["labels"] == list(SOCIAL_SCHEMA.labels)
    assert sum(metrics["data"]["rows"].values()) == summary.rows
    assert "best_achievable_auc" not in metrics["data"]  # no truth columns in real logs
    for split in ("valid", "test"):
        for task in SOCIAL_SCHEMA.labels:
            block = metrics[split][task]
            assert all(math.isfinite(block[k]) for k in ("auc", "logloss")), (split, task, block)
    assert metrics["test"]["mean_auc"] > 0.6  # the pattern is learned (0.74 when written)
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"metrics: {run_dir / 'metrics.json'}"
    )
