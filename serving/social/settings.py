"""The backend's settings: dataclasses built from the Hydra group ``configs/backend/`` (or any
mapping) by :func:`settings_from_mapping`, which names a misspelled or unknown key.

``storage: embedded`` (the default) keeps everything in one SQLite file plus a blob folder;
``storage: production`` uses PostgreSQL (``postgres_url``) for metadata and the outbox and Redis
(``redis_url``) for timelines, story trays, caches, rate limits and the event bus.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class FanoutSettings:
    threshold: int = 100_000  # authors with >= this many followers are pulled at read time
    timeline_cap: int = 800  # entries kept per pushed timeline
    batch_size: int = 1_000  # followers per fanout batch
    inactive_after_days: float = 30.0  # no pushes to users idle this long; rebuilt on read
    backfill_posts: int = 50  # recent posts copied into a timeline on follow or rebuild
    celebrity_posts_per_read: int = 50  # recent posts pulled per followed celebrity per read


@dataclass
class FeedSettings:
    page_size: int = 20
    max_page_size: int = 100
    candidates: int = 800  # pushed + pulled posts considered per first page
    session_ttl_s: int = 1_800  # ranked-feed snapshot lifetime (cursor validity)


@dataclass
class StorySettings:
    ttl_s: int = 86_400  # a story expires exactly this long after it was posted
    cleanup_interval_s: float = 60.0
    media_grace_s: float = 86_400.0  # expired stories' media: deletable this long after expiry


@dataclass
class BucketSettings:
    capacity: float
    refill_per_s: float


@dataclass
class RateLimitSettings:
    enabled: bool = True
    writes: BucketSettings = field(default_factory=lambda: BucketSettings(60.0, 1.0))
    reads: BucketSettings = field(default_factory=lambda: BucketSettings(300.0, 10.0))
    uploads: BucketSettings = field(default_factory=lambda: BucketSettings(20.0, 0.2))
    auth: BucketSettings = field(default_factory=lambda: BucketSettings(10.0, 0.1))  # per IP


@dataclass
class MediaSettings:
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000  # checked from the header, before decoding
    max_image_side: int = 12_000
    image_sizes: tuple[int, ...] = (1440, 250)  # long side of each rendition
    jpeg_quality: int = 85
    max_video_bytes: int = 200 * 1024 * 1024
    max_video_seconds: float = 180.0
    video_height: int = 720
    video_codecs: tuple[str, ...] = ("h264", "av1")
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    ffmpeg_timeout_s: float = 300.0
    cache_max_age_s: int = 31_536_000  # upper bound of a blob's max-age (its URL expires first)
    url_ttl_s: int = 3_600  # signed blob URLs are valid for between half and all of this
    url_secret: str = ""  # HMAC key of blob URLs; default: random, kept in {data_dir}/blob-url.key


@dataclass
class RankerSettings:
    kind: Literal["chronological", "http", "onnx"] = "chronological"
    url: str = ""  # POST endpoint of serving.inference when kind=http
    timeout_ms: float = 150.0
    export_dir: str = ""  # a `recsys export` folder ranked in this process when kind=onnx
    threads: int = 1  # ONNX Runtime intra-op threads of the in-process ranker


@dataclass
class AuthSettings:
    token_ttl_days: float = 30.0
    password_min_length: int = 8


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers_in_process: bool = True  # run fanout/media/cleanup workers as threads of serve
    poll_interval_s: float = 0.2
    idempotency_ttl_s: float = 86_400.0  # how long a retry with an Idempotency-Key is answered
    # Addresses or networks (CIDR) of the reverse proxies whose X-Forwarded-For is believed;
    # from anyone else the header is ignored (the peer address is the client).
    trusted_proxies: tuple[str, ...] = ()


@dataclass
class BackendSettings:
    storage: Literal["embedded", "production"] = "embedded"
    data_dir: str = "data/backend"  # SQLite file and blobs (embedded); blobs (production)
    sqlite_path: str = ""  # default: {data_dir}/social.sqlite3
    blob_dir: str = ""  # default: {data_dir}/blobs
    postgres_url: str = "postgresql+psycopg://recsys@127.0.0.1:55432/recsys"
    redis_url: str = "redis://127.0.0.1:56379/0"
    redis_prefix: str = "social:"  # every Redis key starts with this
    auto_migrate: bool = True  # production: upgrade the PostgreSQL schema on open
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)
    stories: StorySettings = field(default_factory=StorySettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    ranker: RankerSettings = field(default_factory=RankerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    server: ServerSettings = field(default_factory=ServerSettings)

    def resolved_sqlite_path(self) -> str:
        return self.sqlite_path or f"{self.data_dir}/social.sqlite3"

    def resolved_blob_dir(self) -> str:
        return self.blob_dir or f"{self.data_dir}/blobs"


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"backend settings: unknown key(s) {unknown} in {where or 'backend'}; "
            f"known: {sorted(known)}"
        )
    kwargs: dict[str, Any] = {}
    defaults = cls() if cls is not BucketSettings else None
    for name, value in values.items():
        path = f"{where}.{name}" if where else name
        current = getattr(defaults, name) if defaults is not None else None
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            if not isinstance(value, Mapping):
                raise ValueError(f"backend settings: {path} must be a mapping, got {value!r}")
            kwargs[name] = _build(type(current), value, path)
        elif isinstance(current, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def settings_from_mapping(values: Mapping[str, Any] | None = None) -> BackendSettings:
    """Settings from a (possibly nested) mapping such as the resolved ``backend`` config node.

    >>> settings_from_mapping({"fanout": {"threshold": 10}}).fanout.threshold
    10
    """
    settings = _build(BackendSettings, dict(values or {}), "")
    if settings.storage not in ("embedded", "production"):
        raise ValueError(
            f"backend settings: storage must be 'embedded' or 'production', "
            f"got {settings.storage!r}"
        )
    if settings.ranker.kind not in ("chronological", "http", "onnx"):
        raise ValueError(
            f"backend settings: ranker.kind must be 'chronological', 'http' or 'onnx', "
            f"got {settings.ranker.kind!r}"
        )
    if settings.ranker.kind == "onnx" and not settings.ranker.export_dir:
        raise ValueError(
            "backend settings: ranker.kind=onnx needs ranker.export_dir (the folder written by "
            "`recsys export export.run_dir=RUN`, i.e. RUN/export)"
        )
    if settings.ranker.kind == "http" and not settings.ranker.url:
        raise ValueError(
            "backend settings: ranker.kind=http needs ranker.url (e.g. "
            "http://127.0.0.1:8500/rank of `recsys serve`)"
        )
    unknown_codecs = sorted(set(settings.media.video_codecs) - {"h264", "av1"})
    if unknown_codecs:
        raise ValueError(
            f"backend settings: media.video_codecs has unknown codec(s) {unknown_codecs}; "
            "known: ['av1', 'h264']"
        )
    for proxy in settings.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError as error:
            raise ValueError(
                f"backend settings: server.trusted_proxies has {proxy!r}, not an address or "
                f"network ({error})"
            ) from None
    for name in ("threshold", "timeline_cap", "batch_size"):
        if getattr(settings.fanout, name) < 1:
            raise ValueError(f"backend settings: fanout.{name} must be >= 1")
    return settings
