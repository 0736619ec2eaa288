"""Request features from the feature store's online store, by id, so the feed may send ids.

``serve.features: {redis_url: redis://..., project: social}`` (the Redis online store) or
``serve.features: {sqlite_path: .../online.db, project: social}`` (the embedded SQLite online
store, opened read-only) turns it on, exactly one of the two: for ``POST /rank``
the user's features (``country age_bucket user_activity``, ``user_follow_count_log``) are read
by ``user_id``, each candidate's (``author_id topic media_type post_length``,
``post_age_hours`` from the post's creation time and the request's clock,
``author_followers_log``, ``is_following`` of the user-author pair) by ``post_id``, from the
online store that ``recsys.features`` materializes. What the request sends wins. The
values are those of the training set (:mod:`recsys.features.training`): counts missing online
(a new post not yet materialized, an unknown user) are the training defaults
(:data:`recsys.features.schema.DEFAULTS`: ``log1p(0)``, ``is_following "0"``), other missing
features stay absent (the ranker's own missing value); each default or absence is counted, by
feature, in ``/metrics`` (``recsys_input_events_total{model="feature_store",kind="missing"}``).

Feast itself is not imported here (``import feast`` loads torch): the Redis layout is read by
:mod:`recsys.features.redis_layout` (standard library, ``mmh3``, ``redis``), the SQLite one by
:mod:`recsys.features.sqlite_layout` (standard library ``sqlite3``), with one interface.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recsys.features.redis_layout import LayoutReader
from recsys.features.schema import AUTHOR, DEFAULTS, PAIR, POST, USER, pair_id
from recsys.features.sqlite_layout import SqliteLayoutReader, open_online_db

__all__ = ["FeatureSettings", "OnlineFeatures", "feature_settings"]

USER_REFS = (
    "user_profile:country",
    "user_profile:age_bucket",
    "user_profile:user_activity",
    "user_follows:follow_count",
)
POST_REFS = (
    "post:author_id",
    "post:topic",
    "post:media_type",
    "post:post_length",
    "post:created_at",
)
AUTHOR_REFS = ("author_followers:follower_count",)
PAIR_REFS = ("follow_pair:is_following",)


@dataclass(frozen=True)
class FeatureSettings:
    """Where the online store is: a Redis URL or a SQLite file (exactly one), and the Feast
    project (Redis: the key namespace; SQLite: the tables' prefix)."""

    redis_url: str | None = None
    sqlite_path: str | None = None
    project: str = "social"

    def __post_init__(self) -> None:
        if (self.redis_url is None) == (self.sqlite_path is None):
            raise ValueError(
                "serve settings: serve.features needs exactly one of redis_url "
                "(redis://host:port/db) and sqlite_path (Feast's SQLite online store)"
            )


STORE_KEYS = ("redis_url", "sqlite_path")


def feature_settings(values: Mapping[str, Any]) -> FeatureSettings | None:
    """``serve.features`` -> settings (None when empty); unknown keys, neither or both of
    ``redis_url`` / ``sqlite_path`` are a ``ValueError`` naming them."""
    values = dict(values or {})
    if not values:
        return None
    unknown = sorted(set(values) - {*STORE_KEYS, "project"})
    if unknown:
        raise ValueError(f"serve settings: unknown key(s) serve.features.{unknown[0]}")
    stores = {k: str(values[k]) for k in STORE_KEYS if values.get(k)}
    return FeatureSettings(**stores, project=str(values.get("project", "social")))


def _log_count(value: Any, name: str) -> float:
    return math.log1p(float(DEFAULTS[name] if value is None else value))


class OnlineFeatures:
    """Fills ``/rank`` requests from the online store (module docstring).

    Args:
        settings: the store (Redis or SQLite) and project.
        clock: the request time in unix seconds (``post_age_hours``).
    """

    def __init__(self, settings: FeatureSettings, clock: Callable[[], float] = time.time) -> None:
        reader: type[LayoutReader] | type[SqliteLayoutReader]
        if settings.redis_url is not None:
            import redis

            self.client: Any = redis.Redis.from_url(settings.redis_url)
            reader = LayoutReader
        else:
            assert settings.sqlite_path is not None
            try:
                self.client = open_online_db(settings.sqlite_path)
            except FileNotFoundError as err:
                raise ValueError(f"serve settings: serve.features.sqlite_path: {err}") from err
            reader = SqliteLayoutReader
        project = settings.project
        self.users = reader(self.client, project, USER, USER_REFS)
        self.posts = reader(self.client, project, POST, POST_REFS)
        self.authors = reader(self.client, project, AUTHOR, AUTHOR_REFS)
        self.pairs = reader(self.client, project, PAIR, PAIR_REFS)
        self.clock = clock
        self._lock = threading.Lock()
        self.missing: Counter[str] = Counter()

    def fill(
        self,
        user_id: Any,
        user: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        wanted: Sequence[str],
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``(user, candidates)`` with the features of ``wanted`` (the ranker's raw feature
        names) that the request lacks read from the online store."""
        want = set(wanted)
        missing: Counter[str] = Counter()
        user_out = dict(user)
        if user_id is not None:
            got = self.users.fetch([user_id])
            for name in ("country", "age_bucket", "user_activity"):
                if name in want and name not in user_out:
                    value = got[name][0]
                    if value is None:
                        missing[name] += 1
                    else:
                        user_out[name] = value
            if "user_follow_count_log" in want and "user_follow_count_log" not in user_out:
                count = got["follow_count"][0]
                missing["user_follow_count_log"] += count is None
                user_out["user_follow_count_log"] = _log_count(count, "follow_count")
        rows = [dict(c) for c in candidates]
        lookup = [i for i, r in enumerate(rows) if "post_id" in r]
        posts = self.posts.fetch([rows[i]["post_id"] for i in lookup])
        now = self.clock()
        author_of: list[Any] = [r.get("author_id") for r in rows]
        for k, i in enumerate(lookup):
            row = rows[i]
            if author_of[i] is None and posts["author_id"][k] is not None:
                author_of[i] = posts["author_id"][k]
                if "author_id" in want:
                    row["author_id"] = author_of[i]
            for name in ("topic", "media_type", "post_length"):
                if name in want and name not in row:
                    value = posts[name][k]
                    if value is None:
                        missing[name] += 1
                    else:
                        row[name] = value
            if "post_age_hours" in want and "post_age_hours" not in row:
                created = posts["created_at"][k]
                if created is None:
                    missing["post_age_hours"] += 1
                else:
                    row["post_age_hours"] = (now - created) / 3600.0
        with_author = [i for i, a in enumerate(author_of) if a is not None]
        authors = self.authors.fetch([author_of[i] for i in with_author])
        uid = user_out.get("user_id", user_id)
        pair_rows = with_author if uid is not None else []
        pairs = self.pairs.fetch([pair_id(str(uid), str(author_of[i])) for i in pair_rows])
        followers = dict(zip(with_author, authors["follower_count"]))
        states = dict(zip(pair_rows, pairs["is_following"]))
        for i, row in enumerate(rows):
            if "author_followers_log" in want and "author_followers_log" not in row:
                count = followers.get(i)
                missing["author_followers_log"] += count is None
                row["author_followers_log"] = _log_count(count, "follower_count")
            if "is_following" in want and "is_following" not in row:
                state = states.get(i)
                missing["is_following"] += state is None
                row["is_following"] = (
                    "1" if (DEFAULTS["is_following"] if state is None else state) else "0"
                )
        if missing:
            with self._lock:
                self.missing.update(missing)
        return user_out, rows

    def counters(self) -> dict[str, dict[str, int]]:
        """``{"missing": {feature: count}}`` for ``/metrics``."""
        with self._lock:
            return {"missing": dict(self.missing)}

    def close(self) -> None:
        self.client.close()
