"""Storage for the social backend.

What lives here: the interfaces every service is written against (``interfaces``), their
embedded SQLite and production PostgreSQL adapters (``sql``; the metadata store one module per
aggregate in ``sql.metadata``) and Redis adapters (``redis``), local content-addressed blobs
(``blobs``), the checks of adapter settings both engines share (``checks``), the in-memory
rate limits that stand in for Redis's while it is down (``fallback``), and the
:class:`Storage` bundle the services share, built from settings by ``factory.open_storage``.

What it may import: :mod:`serving.social.domain` (records and errors), and in ``factory`` only
the settings and clock it builds from; never the services, media processing, the API or the
workers (import-linter contracts in ``pyproject.toml`` check this, and that ``sql`` and
``redis`` do not import each other).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    #: name -> a check that raises when that dependency is down ("metadata", "redis", "blobs")
    probes: dict[str, Callable[[], object]] = field(default_factory=dict)

    def health(self) -> dict[str, str | None]:
        """Each dependency's state: None when its probe passed, else the error's text."""
        states: dict[str, str | None] = {}
        for name, probe in self.probes.items():
            try:
                probe()
                states[name] = None
            except Exception as error:
                states[name] = f"{type(error).__name__}: {error}"[:300]
        return states

    def close(self) -> None:
        self.bus.close()
        self.metadata.close()
