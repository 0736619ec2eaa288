"""Names of the social feature store, in one place and without Feast: the Parquet sources,
their columns, the entities, the feature views and their fields, and the defaults a missing
value gets (in training and at serving alike).

The sources folder (``<data>/sources``) holds one Parquet file per table of :data:`SOURCES`;
:mod:`recsys.features.tables` builds them from event tables, :mod:`recsys.features.definitions`
declares them to Feast.

Example:
    >>> FEATURE_REFS["is_following"]
    'follow_pair:is_following'
"""

from __future__ import annotations

EVENT_TIMESTAMP = "event_timestamp"
"""The event-time column of every source (``Datetime("us", "UTC")``)."""
CREATED = "created"
"""The tie-break column of sources with several rows per entity and second: the later
``created`` wins among rows of the same ``event_timestamp`` (the log's order)."""
REQUEST_TS = "request_ts"
"""The request-time field (Int64 unix seconds) of the on-demand view: the label's timestamp in
training, the serving clock online."""

USER, POST, AUTHOR, PAIR = "user_id", "post_id", "author_id", "user_author_id"
"""Join keys of the four entities (Utf8 ids; the pair's is ``"<user_id>:<author_id>"``)."""

ACTIVITY_WINDOWS = {"1h": 3_600, "1d": 86_400, "7d": 7 * 86_400}
"""The user activity windows: ``impressions_<name>`` counts the user's impressions in
``(t - seconds, t]``."""
POSTING_WINDOW_S = 7 * 86_400
"""``posts_7d``: the author's posts created in ``(t - 7 days, t]``."""
ACTIVITY_TTL_S = 8 * 86_400
"""TTL of the activity views: the last row of an entity (at its last event plus the longest
window) holds zeros, so a value older than this is zero too."""

SOURCES: dict[str, tuple[str, ...]] = {
    "posts": (POST, AUTHOR, "topic", "media_type", "post_length", "created_at"),
    "users": (USER, "country", "age_bucket", "user_activity"),
    "follow_pairs": (PAIR, USER, AUTHOR, "is_following", CREATED),
    "author_followers": (AUTHOR, "follower_count", CREATED),
    "user_follows": (USER, "follow_count", CREATED),
    "user_activity": (USER, *(f"impressions_{w}" for w in ACTIVITY_WINDOWS)),
    "author_posting": (AUTHOR, "posts_7d"),
}
"""Source table -> its columns besides :data:`EVENT_TIMESTAMP` (file ``<name>.parquet``)."""

VIEWS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "post": ("posts", POST, ("author_id", "topic", "media_type", "post_length", "created_at")),
    "user_profile": ("users", USER, ("country", "age_bucket", "user_activity")),
    "follow_pair": ("follow_pairs", PAIR, ("is_following",)),
    "author_followers": ("author_followers", AUTHOR, ("follower_count",)),
    "user_follows": ("user_follows", USER, ("follow_count",)),
    "user_activity": ("user_activity", USER, tuple(f"impressions_{w}" for w in ACTIVITY_WINDOWS)),
    "author_posting": ("author_posting", AUTHOR, ("posts_7d",)),
}
"""Feature view -> (source, join key, features)."""
ON_DEMAND_VIEW = "post_age"
"""The on-demand view: ``post_age_hours = (request_ts - created_at) / 3600``."""

FEATURE_REFS: dict[str, str] = {
    "post_age_hours": f"{ON_DEMAND_VIEW}:post_age_hours",
    "follower_count": "author_followers:follower_count",
    "follow_count": "user_follows:follow_count",
    "post_length": "post:post_length",
    "topic": "post:topic",
    "media_type": "post:media_type",
    "country": "user_profile:country",
    "age_bucket": "user_profile:age_bucket",
    "user_activity": "user_profile:user_activity",
    "is_following": "follow_pair:is_following",
}
"""What the training set of the social rankers reads: output name -> ``view:feature``."""

DEFAULTS: dict[str, float | int | None] = {
    "follower_count": 0,
    "follow_count": 0,
    "is_following": 0,
    "posts_7d": 0,
    **{f"impressions_{w}": 0 for w in ACTIVITY_WINDOWS},
}
"""The value of a count feature with no row (before the entity's first event, or not yet
materialized online); other features stay null (the rankers' own missing value)."""


def pair_id(user_id: str, author_id: str) -> str:
    """The user-author pair's join key."""
    return f"{user_id}:{author_id}"
