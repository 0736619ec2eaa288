"""Storage for the social backend: the interfaces (``interfaces``), their embedded SQLite and
production PostgreSQL/Redis adapters (``sql``, ``redis``), local blobs (``blobs``), and the
:class:`Storage` bundle the services share, built from settings by ``factory.open_storage``."""

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
