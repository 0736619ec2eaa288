"""The social feature store declared to Feast: four entities, a feature view per source of
:data:`recsys.features.schema.VIEWS`, and the on-demand view of request-time values.

* entities: ``user`` (``user_id``), ``post`` (``post_id``), ``author`` (``author_id``) and
  ``user_author`` (``user_author_id`` = ``"<user>:<author>"``), all Utf8.
* views (Parquet ``FileSource`` under the sources folder, read by the DuckDB offline store):
  ``post`` (author, topic, media type, length, creation time; no TTL), ``user_profile``
  (country, age bucket, activity level), ``follow_pair`` (the pair's follow state with its
  history: every follow and unfollow is a row), ``author_followers`` (follower count),
  ``user_follows`` (followee count), ``user_activity`` (impressions over 1 h / 1 d / 7 d) and
  ``author_posting`` (posts over 7 d), the last two with a TTL of
  :data:`~recsys.features.schema.ACTIVITY_TTL_S`.
* on-demand: ``post_age`` - ``post_age_hours`` from ``post:created_at`` and the request's
  ``request_ts`` (Int64 unix seconds).

This module imports Feast (about 5 s); the repository folder ``pipelines/feature_repo`` and
:mod:`recsys.features.store` import it when they need the objects.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from feast import Entity, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import OnDemandFeatureView, on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

from recsys.features.schema import (
    ACTIVITY_TTL_S,
    AUTHOR,
    CREATED,
    EVENT_TIMESTAMP,
    PAIR,
    POST,
    REQUEST_TS,
    SOURCES,
    USER,
    VIEWS,
)

_DTYPES: dict[str, Any] = {
    "post_length": Float64,
    "created_at": Int64,
    "is_following": Int64,
    "follower_count": Int64,
    "follow_count": Int64,
    "posts_7d": Int64,
    "impressions_1h": Int64,
    "impressions_1d": Int64,
    "impressions_7d": Int64,
}
_TTL = {view: timedelta(seconds=ACTIVITY_TTL_S) for view in ("user_activity", "author_posting")}


@dataclass(frozen=True)
class SocialDefinitions:
    """The Feast objects of the social store (``objects()`` lists them for ``apply``)."""

    entities: dict[str, Entity]
    sources: dict[str, FileSource]
    views: dict[str, FeatureView]
    post_age: OnDemandFeatureView
    request: RequestSource

    def objects(self) -> list[Any]:
        """Everything to pass to ``FeatureStore.apply``."""
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.views.values(),
            self.request,
            self.post_age,
        ]


def post_age(inputs: pd.DataFrame) -> pd.DataFrame:
    """``post_age_hours = (request_ts - created_at) / 3600`` (null where either is).

    Self-contained: Feast stores the function's source and runs it without this module's
    names (so the column names are literals here, checked against the schema by the tests).
    """
    import pandas as pd

    out = pd.DataFrame(index=inputs.index)
    request = pd.to_numeric(inputs["request_ts"], errors="coerce").astype("float64")
    created = pd.to_numeric(inputs["created_at"], errors="coerce").astype("float64")
    out["post_age_hours"] = (request - created) / 3600.0
    return out


def _fresh(function: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``function``: Feast's decorator sets the function's ``__module__`` to
    ``__main__`` (so dill pickles it by value), which breaks reading its source a second
    time; each definition gets its own copy and this module's function stays intact."""
    copy = types.FunctionType(
        function.__code__, function.__globals__, function.__name__, function.__defaults__
    )
    copy.__doc__, copy.__module__ = function.__doc__, function.__module__
    return copy


def social_definitions(sources_dir: str | Path) -> SocialDefinitions:
    """The entities, sources and views over the Parquet files in ``sources_dir`` (absolute
    paths are baked into the registry; a relative folder resolves against the repo path)."""
    folder = Path(sources_dir)
    entities = {
        "user": Entity(name="user", join_keys=[USER], value_type=ValueType.STRING),
        "post": Entity(name="post", join_keys=[POST], value_type=ValueType.STRING),
        "author": Entity(name="author", join_keys=[AUTHOR], value_type=ValueType.STRING),
        "user_author": Entity(name="user_author", join_keys=[PAIR], value_type=ValueType.STRING),
    }
    by_key = {e.join_key: e for e in entities.values()}
    sources = {
        name: FileSource(
            name=f"{name}_source",
            path=str(folder / f"{name}.parquet"),
            timestamp_field=EVENT_TIMESTAMP,
            created_timestamp_column=CREATED if CREATED in columns else "",
        )
        for name, columns in SOURCES.items()
    }
    views = {
        view: FeatureView(
            name=view,
            entities=[by_key[key]],
            ttl=_TTL.get(view, timedelta(0)),
            schema=[Field(name=f, dtype=_DTYPES.get(f, String)) for f in features],
            source=sources[source],
            online=True,
        )
        for view, (source, key, features) in VIEWS.items()
    }
    request = RequestSource(name="request_time", schema=[Field(name=REQUEST_TS, dtype=Int64)])
    view = on_demand_feature_view(
        sources=[views["post"][["created_at"]], request],
        schema=[Field(name="post_age_hours", dtype=Float64)],
        mode="pandas",
    )(_fresh(post_age))
    return SocialDefinitions(
        entities=entities, sources=sources, views=views, post_age=view, request=request
    )
