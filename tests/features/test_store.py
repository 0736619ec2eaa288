"""The feature store end to end on a tiny synthetic world: the ``feast`` command line in
``pipelines/feature_repo``, the point-in-time training set against the generator's own
columns, bad input, offline/online consistency on SQLite and on the real Redis, the direct
readers of both online stores against Feast's own read, and a materialization that fails
midway."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from recsys.data.synthetic import SocialSource
from recsys.features.materialize import (
    MaterializationError,
    check_complete,
    materialize,
    pending_views,
)
from recsys.features.online import (
    RedisFeatureReader,
    SqliteFeatureReader,
    fill_defaults,
    online_features,
    sqlite_path,
)
from recsys.features.schema import FEATURE_REFS, PAIR, VIEWS
from recsys.features.store import FeatureStoreError, StoreSettings, open_store
from recsys.features.training import FeastSocialSource, historical_features
from tests.features.conftest import TINY

REPO = Path(__file__).resolve().parents[2] / "pipelines" / "feature_repo"
START = datetime(1970, 1, 1, tzinfo=UTC)
COUNT_REFS = [f"{view}:{f}" for view, (_, _, fs) in VIEWS.items() for f in fs if view != "post"]
ALL_REFS = [*COUNT_REFS, "post:topic", "post:post_length", "post:created_at"]


def _copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A writable copy of the data folder, its sources re-registered at the copy's paths."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("registry.db", "online.db"))
    return data


def _mid(labels: pl.DataFrame) -> int:
    return int(labels["timestamp"].quantile(0.5))


def _sample(labels: pl.DataFrame, at: int, n: int = 60) -> pl.DataFrame:
    rows = labels.filter(pl.col("timestamp") <= at).unique(["user_id", "post_id"]).sort("timestamp")
    return rows.tail(n).with_columns(pl.lit(at).cast(pl.Int64).alias("timestamp"))


def _online(store, sample: pl.DataFrame) -> dict[str, list]:
    rows = {
        "user_id": sample["user_id"].to_list(),
        "post_id": sample["post_id"].to_list(),
        "author_id": sample["author_id"].to_list(),
        PAIR: [f"{u}:{a}" for u, a in zip(sample["user_id"], sample["author_id"])],
    }
    values, _ = fill_defaults(online_features(store, ALL_REFS, rows))
    return values


def _offline(store, sample: pl.DataFrame) -> dict[str, list]:
    frame = historical_features(store, sample, ALL_REFS)
    values, _ = fill_defaults({c: frame[c].to_list() for c in frame.columns})
    return values


_CLI = """
import sys
from feast.cli.cli import cli
for args in (["apply"], ["materialize", "1970-01-01T00:00:00", "2030-01-01T00:00:00"]):
    cli.main(["--chdir", sys.argv[1], *args], standalone_mode=False)
"""


def test_feast_cli_apply_and_materialize_in_the_repo_folder(
    tiny_data: Path, tmp_path: Path
) -> None:
    """``feast apply`` then ``feast materialize`` in a copy of the repo folder, in a fresh
    interpreter as the command line runs them (one process for both: Feast loads slowly)."""
    import os
    import subprocess
    import sys

    from feast import FeatureStore

    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    _copy(tiny_data, repo)
    env = {**os.environ, "PYTHONPATH": str(REPO.parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _CLI, str(repo)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Created feature view follow_pair" in done.stdout
    assert "Materializing" in done.stdout
    store = FeatureStore(repo_path=str(repo))
    assert {v.name for v in store.list_feature_views()} == set(VIEWS)
    assert [v.name for v in store.list_on_demand_feature_views()] == ["post_age"]
    labels = pl.read_parquet(repo / "data" / "labels.parquet")
    last = labels.sort("timestamp").tail(1)
    got = store.get_online_features(
        features=["user_follows:follow_count", "post:topic"],
        entity_rows=[{"user_id": last["user_id"][0], "post_id": last["post_id"][0]}],
    ).to_dict()
    assert (
        got["topic"]
        == last.join(pl.read_parquet(repo / "data" / "sources" / "posts.parquet"), on="post_id")[
            "topic"
        ].to_list()
    )
    assert got["follow_count"][0] is not None


def test_feast_training_set_equals_the_generators_point_in_time_columns(tiny_data: Path) -> None:
    feast_rows = pl.concat(list(FeastSocialSource(tiny_data, chunk_rows=1200).iter_chunks()))
    direct = pl.concat(list(SocialSource(TINY).iter_chunks()))
    assert feast_rows.columns == direct.columns
    assert feast_rows.dtypes == direct.dtypes
    for column in direct.columns:
        a, b = feast_rows[column], direct[column]
        if a.dtype.is_float():
            assert ((a - b).abs() <= 1e-9).all(), column
        else:
            assert (a == b).all(), column
    assert direct["is_following"].n_unique() == 2  # both states occur


def test_bad_input_is_a_clear_error(tiny_data: Path) -> None:
    store = open_store(StoreSettings(tiny_data), apply=False)
    labels = pl.read_parquet(tiny_data / "labels.parquet").head(5)
    with pytest.raises(FeatureStoreError, match="unknown feature view 'nope'"):
        historical_features(store, labels, ["nope:x"])
    with pytest.raises(FeatureStoreError, match="unknown feature 'likes' in view 'post'"):
        historical_features(store, labels, ["post:likes"])
    with pytest.raises(FeatureStoreError, match="not 'view:feature'"):
        historical_features(store, labels, ["topic"])
    with pytest.raises(FeatureStoreError, match="event-timestamp column 'timestamp'"):
        historical_features(store, labels.drop("timestamp"), ["post:topic"])
    future = labels.with_columns(pl.lit(4_102_444_800).cast(pl.Int64).alias("timestamp"))
    with pytest.raises(FeatureStoreError, match="row 0 is in the future"):
        historical_features(store, future, ["post:topic"])
    with pytest.raises(FeatureStoreError, match="field user_id"):
        historical_features(store, labels.drop("user_id"), ["post:topic"])
    with pytest.raises(FeatureStoreError, match="online must be one of"):
        StoreSettings(tiny_data, online="memcached")
    with pytest.raises(FeatureStoreError, match=r"label table .* not found"):
        FeastSocialSource(tiny_data, labels=tiny_data / "missing.parquet")


def test_online_values_equal_the_training_set_after_materialization(
    tiny_data: Path, tmp_path: Path
) -> None:
    store = open_store(StoreSettings(_copy(tiny_data, tmp_path)))
    labels = pl.read_parquet(tiny_data / "labels.parquet")
    at = _mid(labels)
    report = materialize(store, datetime.fromtimestamp(at, UTC), start=START)
    assert set(report.written) == set(VIEWS)
    sample = _sample(labels, at)
    online, offline = _online(store, sample), _offline(store, sample)
    assert online == offline
    # a later label sees later values offline; online stays at the materialized time
    later = historical_features(
        store, sample.with_columns(pl.col("timestamp") + 30 * 86_400), COUNT_REFS
    )
    assert later["follower_count"].to_list() != offline["follower_count"]
    again = materialize(store, datetime.fromtimestamp(at, UTC))
    assert set(again.up_to_date) == set(VIEWS)


def test_redis_online_store_against_the_real_server(
    tiny_data: Path, tmp_path: Path, redis_url: str
) -> None:
    settings = StoreSettings(
        _copy(tiny_data, tmp_path),
        online="redis",
        redis_url=redis_url,
        project=f"t{uuid.uuid4().hex[:10]}",
    )
    store = open_store(settings)
    try:
        labels = pl.read_parquet(tiny_data / "labels.parquet")
        at = _mid(labels)
        materialize(store, datetime.fromtimestamp(at, UTC), start=START)
        sample = _sample(labels, at)
        assert _online(store, sample) == _offline(store, sample)
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        refs = ["user_profile:country", "user_follows:follow_count", "user_activity:impressions_1d"]
        reader = RedisFeatureReader(store, refs)
        ids = [*sample["user_id"].to_list(), "no-such-user"]
        feast_key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=ids[0])])
        assert reader.key(ids[0]) == serialize_entity_key(feast_key, 3) + settings.project.encode()
        direct = reader.fetch(ids)
        assert direct == online_features(store, refs, {"user_id": ids})
        assert direct["follow_count"][-1] is None and direct["country"][0] is not None
        reader.close()
        with pytest.raises(FeatureStoreError, match="share one join key"):
            RedisFeatureReader(store, ["user_profile:country", "post:topic"])
    finally:
        store.teardown()


def test_sqlite_reader_equals_feasts_online_read(tiny_data: Path, tmp_path: Path) -> None:
    """The direct read of the SQLite online store's tables returns what Feast's
    ``get_online_features`` returns: for users with a profile but no activity row before the
    materialized time (a view without a value), for posts
    created after the materialized time (no row at all) and for unknown ids."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from recsys.features.sqlite_layout import SqliteLayoutReader, open_online_db

    store = open_store(StoreSettings(_copy(tiny_data, tmp_path)))
    labels = pl.read_parquet(tiny_data / "labels.parquet")
    at = _mid(labels)
    materialize(store, datetime.fromtimestamp(at, UTC), start=START)
    user_refs = [
        "user_profile:country",
        "user_follows:follow_count",
        "user_activity:impressions_1d",
    ]
    users = [*labels["user_id"].unique(maintain_order=True).to_list(), "no-such-user"]
    reader = SqliteFeatureReader(store, user_refs)
    direct = reader.fetch(users)
    assert direct == online_features(store, user_refs, {"user_id": users})
    assert all(direct[f][-1] is None for f in reader.features)  # an unknown user
    in_one_view_only = [
        i
        for i, c in enumerate(direct["country"])
        if c is not None and direct["impressions_1d"][i] is None
    ]
    assert in_one_view_only, "no user with a profile and no activity row: the case is untested"
    key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=users[0])])
    assert reader.key(users[0]) == serialize_entity_key(key, 3)
    reader.close()

    post_refs = ["post:author_id", "post:topic", "post:post_length", "post:created_at"]
    posts = labels["post_id"].unique(maintain_order=True).to_list()
    reader = SqliteFeatureReader(store, post_refs)
    direct = reader.fetch([*posts, posts[0]])  # a repeated id reads twice
    assert direct == online_features(store, post_refs, {"post_id": [*posts, posts[0]]})
    assert None in direct["topic"] and set(direct["topic"]) != {None}  # late posts: no row
    reader.close()

    with pytest.raises(FeatureStoreError, match="share one join key"):
        SqliteFeatureReader(store, ["user_profile:country", "post:topic"])
    with pytest.raises(FeatureStoreError, match="unknown feature view"):
        SqliteFeatureReader(store, ["no_view:x"])
    conn = open_online_db(sqlite_path(store))
    with pytest.raises(ValueError, match="no table 'other_post'"):
        SqliteLayoutReader(conn, "other", "post_id", post_refs)
    with pytest.raises(ValueError, match="not 'view:feature'"):
        SqliteLayoutReader(conn, "social", "post_id", ["topic"])
    conn.close()
    with pytest.raises(FileNotFoundError, match="no SQLite online store"):
        open_online_db(tmp_path / "missing.db")


def test_materialization_failing_midway_is_reported_and_resumes(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    store = open_store(StoreSettings(_copy(tiny_data, tmp_path)))
    labels = pl.read_parquet(tiny_data / "labels.parquet")
    at = _mid(labels)
    end = datetime.fromtimestamp(at, UTC)
    first = datetime.fromtimestamp(int(labels["timestamp"].min()), UTC)
    materialize(store, first, start=START)  # an earlier consistent state
    write = SqliteOnlineStore.online_write_batch
    calls = {"n": 0}

    def half_then_fail(self, config, table, data, progress):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if table.name == "author_followers":
            write(self, config, table, data[: len(data) // 2], progress)
            raise ConnectionError("disk went away")
        return write(self, config, table, data, progress)

    monkeypatch.setattr(SqliteOnlineStore, "online_write_batch", half_then_fail)
    with pytest.raises(
        MaterializationError, match=r"view 'author_followers'.*run materialize again"
    ):
        materialize(store, end)
    assert set(pending_views(store)) == {"author_followers"}
    with pytest.raises(FeatureStoreError, match="partly materialized"):
        check_complete(store)
    monkeypatch.setattr(SqliteOnlineStore, "online_write_batch", write)
    report = materialize(store, end)
    assert "author_followers" in report.written
    assert set(report.up_to_date) >= {"post", "user_profile", "follow_pair"}
    check_complete(store)
    sample = _sample(labels, at)
    assert _online(store, sample) == _offline(store, sample)


def test_feature_refs_name_registered_features(tiny_data: Path) -> None:
    from recsys.features.store import check_refs

    store = open_store(StoreSettings(tiny_data), apply=False)
    assert check_refs(store, FEATURE_REFS.values()) == list(FEATURE_REFS.values())
