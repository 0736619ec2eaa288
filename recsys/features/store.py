"""Opening the social feature store from code: a Feast ``RepoConfig`` built from
:class:`StoreSettings` (no ``feature_store.yaml`` needed), the definitions applied, and the
checks of feature references against the registry.

Every path is under ``data_dir``: ``registry.db``, ``online.db`` (the SQLite online store),
``sources/*.parquet`` (the offline data the DuckDB offline store reads). The online store is
SQLite by default, or Redis (``online="redis"`` with ``redis_url``), e.g. the server that
``scripts/services.sh`` starts. ``pipelines/feature_repo`` is the same store for the ``feast``
command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from recsys.types import DataError

if TYPE_CHECKING:
    from feast import FeatureStore

OnlineKind = Literal["sqlite", "redis"]
ONLINE_KINDS = ("sqlite", "redis")


class FeatureStoreError(DataError):
    """A bad request to the feature store (unknown feature, bad label table, bad settings)."""


@dataclass(frozen=True)
class StoreSettings:
    """Where the store lives and which online store it uses.

    Attributes:
        data_dir: the folder of the registry, the SQLite online store and ``sources/``.
        online: ``sqlite`` (embedded) or ``redis``.
        redis_url: ``redis://host:port/db`` for ``online="redis"``.
        project: the Feast project (also the key namespace in Redis).
    """

    data_dir: str | Path
    online: str = "sqlite"
    redis_url: str | None = None
    project: str = "social"

    def __post_init__(self) -> None:
        if self.online not in ONLINE_KINDS:
            raise FeatureStoreError(
                f"online must be one of {ONLINE_KINDS}, got {self.online!r}", field="online"
            )
        if self.online == "redis" and not self.redis_url:
            raise FeatureStoreError("online='redis' needs redis_url", field="redis_url")
        if not self.project.isidentifier():
            raise FeatureStoreError(
                f"project must be letters, digits and underscores, got {self.project!r}",
                field="project",
            )

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def sources_dir(self) -> Path:
        return self.root / "sources"


def redis_connection_string(url: str) -> str:
    """``redis://host:port/db`` -> Feast's ``host:port,db=N`` (password kept)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise FeatureStoreError(f"redis_url must be redis://host:port/db, got {url!r}")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = parsed.path.strip("/")
    if db:
        parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def repo_config_dict(settings: StoreSettings) -> dict[str, object]:
    """The ``feature_store.yaml`` content of ``settings`` as a dict."""
    root = settings.root
    online: dict[str, object]
    if settings.online == "redis":
        assert settings.redis_url is not None
        online = {
            "type": "redis",
            "connection_string": redis_connection_string(settings.redis_url),
        }
    else:
        online = {"type": "sqlite", "path": str(root / "online.db")}
    return {
        "project": settings.project,
        "provider": "local",
        "registry": {
            "registry_type": "file",
            "path": str(root / "registry.db"),
            "cache_ttl_seconds": 0,
        },
        "online_store": online,
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }


def open_store(settings: StoreSettings, *, apply: bool = True) -> FeatureStore:
    """The Feast store of ``settings``; with ``apply`` the social definitions over
    ``settings.sources_dir`` are applied (idempotent: unchanged objects stay as they are)."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    root = settings.root
    root.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(**repo_config_dict(settings), repo_path=root)  # type: ignore[arg-type]
    store = FeatureStore(config=config)
    if apply:
        from recsys.features.definitions import social_definitions

        store.apply(social_definitions(settings.sources_dir).objects())
    return store


def known_features(store: FeatureStore) -> dict[str, list[str]]:
    """``view -> feature names`` of the registry (feature and on-demand views)."""
    known = {
        v.name: [f.name for f in v.features] for v in store.list_feature_views(allow_cache=False)
    }
    for odfv in store.list_on_demand_feature_views(allow_cache=False):
        known[odfv.name] = [f.name for f in odfv.features]
    return known


def check_refs(store: FeatureStore, refs: Iterable[str]) -> list[str]:
    """``refs`` (``view:feature``) as a list; raises :class:`FeatureStoreError` naming the first
    reference that is malformed or not in the registry, with what is known."""
    known = known_features(store)
    checked: list[str] = []
    for ref in refs:
        view, sep, feature = ref.partition(":")
        if not sep or not view or not feature:
            raise FeatureStoreError(f"feature reference {ref!r} is not 'view:feature'", field=ref)
        if view not in known:
            raise FeatureStoreError(
                f"unknown feature view {view!r} in {ref!r}; known views: {sorted(known)}",
                field=ref,
            )
        if feature not in known[view]:
            raise FeatureStoreError(
                f"unknown feature {feature!r} in view {view!r}; it has {known[view]}", field=ref
            )
        checked.append(ref)
    return checked


def views_of(refs: Sequence[str]) -> list[str]:
    """The distinct view names of ``refs``, in first-seen order."""
    return list(dict.fromkeys(r.partition(":")[0] for r in refs))
