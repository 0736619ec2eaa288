"""``/rank`` with ids only: the service reads the user's and the candidates' features from
the feature store's online store, Redis or SQLite (materialized by ``recsys.features``), and
scores what
it scores for the same request with every feature sent; features missing online get the
training defaults and are counted in ``/metrics``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from recsys.data.prepared import PreparedDataset
from tests.serving.inference.conftest import SOCIAL
from tests.serving.social.conftest import redis_url  # noqa: F401 (fixture, by name)


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def online_store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    """The SOCIAL world's store with its online store (the real Redis, or SQLite) loaded up to
    the last label, and the ``serve.features`` that reads it."""
    from pipelines.feature_sources import synthetic_inputs, write_feature_data
    from recsys.features.materialize import materialize
    from recsys.features.store import StoreSettings, open_store

    folder = tmp_path_factory.mktemp("store")
    tables, labels = synthetic_inputs(SOCIAL)
    write_feature_data(tables, labels, folder, apply=False)
    project = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings = StoreSettings(folder, online="redis", redis_url=url, project=project)
        features = {"redis_url": url, "project": project}
    else:
        settings = StoreSettings(folder, project=project)
        features = {"sqlite_path": str(settings.root / "online.db"), "project": project}
    store = open_store(settings)
    end = int(labels["timestamp"].max())
    materialize(store, datetime.fromtimestamp(end, UTC), start=datetime(1970, 1, 1, tzinfo=UTC))
    yield store, features, labels, end
    store.teardown()


def _full_rows(store: Any, labels: pl.DataFrame, user: str, posts: list[str], at: int) -> list:
    """The training set's raw rows of (user, post) at ``at`` (as the ranker was trained)."""
    from recsys.data.synthetic.schema import SOCIAL_SCHEMA
    from recsys.features.schema import FEATURE_REFS
    from recsys.features.training import historical_features, social_columns

    authors = labels.unique("post_id").select("post_id", "author_id")
    frame = (
        pl.DataFrame({"post_id": posts})
        .join(authors, on="post_id", how="left", maintain_order="left")
        .with_columns(pl.lit(user).alias("user_id"), pl.lit(at).cast(pl.Int64).alias("timestamp"))
        .with_columns(*(pl.lit(0.0).cast(pl.Float32).alias(t) for t in SOCIAL_SCHEMA.labels))
    )
    features = historical_features(store, frame, list(FEATURE_REFS.values()))
    return social_columns(frame, features, ()).drop(*SOCIAL_SCHEMA.labels, "timestamp").to_dicts()


def test_rank_reads_features_by_id(
    online_store: Any, social: PreparedDataset, social_ranker: tuple[Path, Any]
) -> None:
    from serving.inference.app import create_app
    from serving.inference.service import InferenceService
    from serving.inference.settings import serve_settings

    store, features, labels, end = online_store
    user = labels["user_id"].mode()[0]
    posts = labels.sort("timestamp").tail(400)["post_id"].unique(maintain_order=True).head(30)
    full = _full_rows(store, labels, user, posts.to_list(), end)
    values = {
        "run_dir": str(social_ranker[0]),
        "reload_interval_s": 0,
        "features": features,
    }
    service = InferenceService(serve_settings(values), clock=lambda: float(end))
    with TestClient(create_app(service)) as api:
        keep = set(service.models.ranker.raw_features)
        sent = [{k: v for k, v in r.items() if k in keep and k != "user_id"} for r in full]
        everything = api.post("/rank", json={"user_id": user, "candidates": sent}).json()
        by_id = api.post(
            "/rank", json={"user_id": user, "candidates": [{"post_id": p} for p in posts]}
        ).json()
        assert by_id["scores"] == pytest.approx(everything["scores"], abs=1e-6)
        assert 'feature="topic"' not in api.get("/metrics").text
        unknown = api.post(
            "/rank", json={"user_id": "no-such-user", "candidates": [{"post_id": "no-such-post"}]}
        )
        assert unknown.status_code == 200
        text = api.get("/metrics").text
        prefix = 'recsys_input_events_total{model="feature_store",kind="missing",feature='
        for feature in ("topic", "post_age_hours", "author_followers_log", "country"):
            assert f'{prefix}"{feature}"}} 1' in text, feature
        assert f'{prefix}"is_following"}}' in text  # pairs that never followed count too
        assert 'recsys_stage_seconds_count{stage="features"} 3' in text


def test_feature_settings_name_one_store(tmp_path: Path) -> None:
    from serving.inference.features import OnlineFeatures, feature_settings
    from serving.inference.settings import serve_settings

    one = r"serve\.features needs exactly one of redis_url .* and sqlite_path"
    with pytest.raises(ValueError, match=one):
        serve_settings({"features": {"project": "x"}})
    with pytest.raises(ValueError, match=one):
        serve_settings({"features": {"redis_url": "redis://h:1/0", "sqlite_path": "o.db"}})
    with pytest.raises(ValueError, match=r"serve\.features\.redis"):
        serve_settings({"features": {"redis": "x"}})
    missing = feature_settings({"sqlite_path": str(tmp_path / "online.db")})
    assert missing is not None and missing.project == "social"
    with pytest.raises(ValueError, match=r"serve\.features\.sqlite_path: no SQLite online store"):
        OnlineFeatures(missing)
