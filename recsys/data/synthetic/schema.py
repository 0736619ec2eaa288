"""The schema of the synthetic social data set, in one place.

Column names, their roles (labels, dense, sparse, timestamp, truth), their dtypes and the
vocabulary of ``user_activity``. The generator (:mod:`recsys.data.synthetic`) writes these
columns, and the social backend's event export (:mod:`pipelines.social_events`) writes the same
ones less the truth columns, so a ranker trains on either without a change; both import them
from here.

* labels (``Float32`` 0/1): :data:`TASKS`.
* dense (``Float64``): :data:`DENSE`.
* sparse (``Utf8``): :data:`SPARSE`; ``user_activity`` takes :data:`ACTIVITY_LEVELS`, split at
  the :data:`ACTIVITY_QUANTILES` of the users' activity (50 / 35 / 15 %).
* :data:`TIMESTAMP` (``Int64`` unix seconds).
* truth (``Float32``, aux, never a model input): :data:`TRUTH_COLUMNS`, the hidden engagement
  probabilities only a generator knows.

Example:
    >>> list(column_dtypes(truth=False))[:2]
    ['like', 'comment']
"""

from __future__ import annotations

import polars as pl

from recsys.types import RawSchema

TASKS = ("like", "comment", "share", "save", "long_dwell")
ACTIVITY_LEVELS = ("low", "medium", "high")
ACTIVITY_QUANTILES = (0.5, 0.85)
"""Quantiles of the users' activity that split :data:`ACTIVITY_LEVELS` (50 / 35 / 15 %)."""

DENSE = ("post_age_hours", "author_followers_log", "user_follow_count_log", "post_length")
SPARSE = (
    "user_id",
    "post_id",
    "author_id",
    "topic",
    "media_type",
    "country",
    "age_bucket",
    "user_activity",
    "is_following",
)
TIMESTAMP = "timestamp"
TRUTH_COLUMNS = tuple(f"p_{t}" for t in TASKS)
SOCIAL_SCHEMA = RawSchema(
    labels=TASKS, dense=DENSE, sparse=SPARSE, timestamp=TIMESTAMP, aux=TRUTH_COLUMNS
)


def column_dtypes(*, truth: bool = True) -> dict[str, pl.DataType]:
    """The columns of :data:`SOCIAL_SCHEMA` in order (``SOCIAL_SCHEMA.columns()``) and their
    dtypes; without the truth columns when ``truth`` is false (what logged data can hold)."""
    dtypes: dict[str, pl.DataType] = {
        **{c: pl.Float32() for c in TASKS},
        **{c: pl.Float64() for c in DENSE},
        **{c: pl.Utf8() for c in SPARSE},
        TIMESTAMP: pl.Int64(),
    }
    if truth:
        dtypes.update({c: pl.Float32() for c in TRUTH_COLUMNS})
    return dtypes
