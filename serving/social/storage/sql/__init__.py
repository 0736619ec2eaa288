"""SQL storage adapters on SQLAlchemy Core: the metadata store (package ``metadata``: SQLite
embedded, PostgreSQL in production, one schema in ``schema`` managed by Alembic in
``migrations``, engines and migration in ``engine``) and the embedded mode's SQL versions of
the timeline store, story cache, key-value cache, rate limiter (``embedded``) and event bus
(``bus``); ``testing`` makes empty, migrated test databases.

May import :mod:`serving.social.domain`, :mod:`serving.social.storage.interfaces` and
:mod:`serving.social.storage.checks`; never the Redis adapters, services or the API.

>>> from serving.social.storage.sql import make_engine, migrate, SqlMetadataStore
"""

from __future__ import annotations

from serving.social.storage.sql.bus import SqlEventBus
from serving.social.storage.sql.embedded import (
    SqlKeyValueCache,
    SqlRateLimiter,
    SqlStoryCache,
    SqlTimelineStore,
)
from serving.social.storage.sql.engine import (
    current_revision,
    head_revision,
    is_sqlite,
    make_engine,
    migrate,
)
from serving.social.storage.sql.metadata import SqlMetadataStore, SqlMetadataTx
from serving.social.storage.sql.schema import metadata

__all__ = [
    "SqlEventBus",
    "SqlKeyValueCache",
    "SqlMetadataStore",
    "SqlMetadataTx",
    "SqlRateLimiter",
    "SqlStoryCache",
    "SqlTimelineStore",
    "current_revision",
    "head_revision",
    "is_sqlite",
    "make_engine",
    "metadata",
    "migrate",
]
