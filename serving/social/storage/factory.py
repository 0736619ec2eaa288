"""Builds the :class:`~serving.social.storage.Storage` bundle that ``settings.storage`` names.

* ``embedded``: one SQLite file (metadata, outbox, timelines, story trays, cache, rate limits,
  event bus) and a local blob folder; the schema is migrated on open, so nothing needs setting
  up first.
* ``production``: PostgreSQL (metadata and outbox, schema by Alembic) and Redis (timelines,
  story trays, cache, rate limits, event bus), blobs in a local folder (an object store maps to
  the same interface). The schema is migrated on open when ``auto_migrate`` is set (the
  shipped config does); otherwise ``recsys backend migrate`` must have run, and opening checks
  the revision.

Jobs that only read the metadata (the event log, posts, users, the follow graph: the
``pipelines`` exports) open it alone with :func:`open_metadata_store`.
"""

from __future__ import annotations

import re
from pathlib import Path

from serving.social.clock import Clock
from serving.social.settings import BackendSettings
from serving.social.storage import Storage
from serving.social.storage.blobs import LocalBlobStore
from serving.social.storage.fallback import FallbackRateLimiter
from serving.social.storage.interfaces import MetadataStore
from serving.social.storage.sql import (
    SqlEventBus,
    SqlKeyValueCache,
    SqlMetadataStore,
    SqlRateLimiter,
    SqlStoryCache,
    SqlTimelineStore,
    make_engine,
    migrate,
)


def metadata_url(settings: BackendSettings) -> str:
    """The SQLAlchemy URL of the metadata database for these settings."""
    if settings.storage == "embedded":
        return f"sqlite:///{Path(settings.resolved_sqlite_path()).resolve()}"
    return settings.postgres_url


def open_metadata_store(settings: BackendSettings) -> MetadataStore:
    """The metadata store of ``settings`` on its own: no migration, no Redis, no blob folder
    (for jobs that read the event log with ``iter_events`` and look up posts, users and follows).

    Nothing is checked on open: call ``check()`` to learn whether the database is reachable and
    at the latest schema revision, and ``close()`` when done. An embedded database that does not
    exist yet is created empty (and fails ``check()``): test for the file first where that matters.
    """
    return SqlMetadataStore(make_engine(metadata_url(settings)))


def open_storage(settings: BackendSettings, clock: Clock) -> Storage:
    """Opens (and, where configured, migrates) every adapter; raises with a clear message when
    a server is unreachable or the schema is behind."""
    engine = make_engine(metadata_url(settings))
    if settings.storage == "embedded" or settings.auto_migrate:
        migrate(engine)
    metadata = SqlMetadataStore(engine)
    metadata.check()
    blobs = LocalBlobStore(settings.resolved_blob_dir())
    cap = settings.fanout.timeline_cap
    probes = {"metadata": metadata.check, "blobs": blobs.check}
    if settings.storage == "embedded":
        return Storage(
            metadata=metadata,
            timelines=SqlTimelineStore(engine, cap),
            stories=SqlStoryCache(engine),
            cache=SqlKeyValueCache(engine, clock.now),
            limiter=SqlRateLimiter(engine),
            bus=SqlEventBus(engine),
            blobs=blobs,
            probes=probes,
        )
    from serving.social.storage.redis import (
        RedisEventBus,
        RedisKeyValueCache,
        RedisRateLimiter,
        RedisStoryCache,
        RedisTimelineStore,
        make_redis,
    )

    client = make_redis(settings.redis_url)
    try:
        client.ping()
    except Exception as error:
        metadata.close()
        where = re.sub(r"//[^@/]*@", "//***@", settings.redis_url)
        raise RuntimeError(
            f"Redis at {where} is not reachable ({error}); start it "
            "(scripts/services.sh start) or set backend.redis_url"
        ) from error
    prefix = settings.redis_prefix
    return Storage(
        metadata=metadata,
        timelines=RedisTimelineStore(client, prefix, cap),
        stories=RedisStoryCache(client, prefix, story_ttl_s=float(settings.stories.ttl_s)),
        cache=RedisKeyValueCache(client, prefix),
        limiter=FallbackRateLimiter(RedisRateLimiter(client, prefix)),
        bus=RedisEventBus(client, prefix),
        blobs=blobs,
        probes={**probes, "redis": client.ping},
    )
