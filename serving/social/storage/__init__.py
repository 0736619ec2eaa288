"""Storage for the social backend.

What lives here: the interfaces every service is written against (``interfaces``), their
embedded SQLite and production PostgreSQL adapters (``sql``; the metadata store one module per
aggregate in ``sql.metadata``) and Redis adapters (``redis``), local content-addressed blobs
(``blobs``), the checks of adapter settings both engines share (``checks``), and the
:class:`Storage` bundle the services share, built from settings by ``factory.open_storage``.

What it may import: :mod:`serving.social.domain` (records and errors), and in ``factory`` only
the settings and clock it builds from; never the services, media processing, the API or the
workers (import-linter contracts in ``pyproject.toml`` check this, and that ``sql`` and
``redis`` do not import each other).
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.social.storage.interfaces import (
    BlobStore,
    EventBus,
    KeyValueCache,
    MetadataStore,
    RateLimiter,
    StoryCache,
    TimelineStore,
)


@dataclass
class Storage:
    """Every adapter a service may use; services receive this, never build adapters."""

    metadata: MetadataStore
    timelines: TimelineStore
    stories: StoryCache
    cache: KeyValueCache
    limiter: RateLimiter
    bus: EventBus
    blobs: BlobStore

    def close(self) -> None:
        self.bus.close()
        self.metadata.close()
