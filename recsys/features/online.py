"""Online features by id: through Feast (:func:`online_features`, any online store) and
fast paths that read Feast's own layout directly, without Feast's per-request Python (registry
lookups, entity-key protos, response building): :class:`RedisFeatureReader` (one pipeline of
``HMGET``) and :class:`SqliteFeatureReader` (one ``SELECT`` per view on the SQLite online
store's tables, :mod:`recsys.features.sqlite_layout`). Both take the same arguments and return
the same ``{feature: [value per id]}``.

Feast's Redis layout (``entity_key_serialization_version: 3``): one hash per entity, key =
``serialize_entity_key(entity) + project``, a field per feature = the little-endian murmur3
of ``"<view>:<feature>"`` holding a serialized ``ValueProto``, and ``_ts:<view>`` the row's
event time. Missing entities and features read as None; :func:`fill_defaults` gives them the
values training gives them (:data:`recsys.features.schema.DEFAULTS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.features.redis_layout import LayoutReader
from recsys.features.schema import DEFAULTS
from recsys.features.sqlite_layout import SqliteLayoutReader, open_online_db
from recsys.features.store import FeatureStoreError, check_refs

if TYPE_CHECKING:
    from feast import FeatureStore


def online_features(
    store: FeatureStore, refs: Sequence[str], entity_rows: Mapping[str, Sequence[Any]]
) -> dict[str, list[Any]]:
    """``{name: [value per row]}`` for the features ``refs`` (named by feature) and the join
    keys of ``entity_rows`` (``{join_key: [ids]}``, equal lengths), through Feast."""
    refs = check_refs(store, refs)
    lengths = {len(v) for v in entity_rows.values()}
    if len(lengths) > 1:
        raise FeatureStoreError(f"entity rows of unequal lengths: {sorted(lengths)}")
    response = store.get_online_features(features=list(refs), entity_rows=dict(entity_rows))
    values = response.to_dict()
    return {r.partition(":")[2]: values[r.partition(":")[2]] for r in refs}


def fill_defaults(values: Mapping[str, list[Any]]) -> tuple[dict[str, list[Any]], int]:
    """``values`` with missing counts set to their training default, and how many were."""
    out: dict[str, list[Any]] = {}
    missing = 0
    for name, column in values.items():
        default = DEFAULTS.get(name)
        if default is None:
            out[name] = list(column)
            continue
        missing += sum(v is None for v in column)
        out[name] = [default if v is None else v for v in column]
    return out, missing


def _client_for(store: FeatureStore) -> Any:
    import redis

    online = store.config.online_store
    if str(online.type) != "redis":
        raise FeatureStoreError(
            f"RedisFeatureReader needs the Redis online store, this store has {online.type!r}"
        )
    host_port, *options = str(online.connection_string).split(",")
    host, _, port = host_port.partition(":")
    kwargs: dict[str, Any] = {"host": host, "port": int(port or 6379)}
    for option in options:
        key, _, value = option.partition("=")
        if key == "db":
            kwargs["db"] = int(value)
        elif key == "password":
            kwargs["password"] = value
        elif key == "ssl":
            kwargs["ssl"] = value.lower() == "true"
    return redis.Redis(**kwargs)


def _join_key(store: FeatureStore, refs: Sequence[str]) -> str:
    """The one string join key that the views of ``refs`` share (else a FeatureStoreError)."""
    from feast.value_type import ValueType

    keys = set()
    for view in dict.fromkeys(r.partition(":")[0] for r in refs):
        columns = store.get_feature_view(view).entity_columns
        keys.add(tuple((c.name, c.dtype.to_value_type()) for c in columns))
    if len(keys) != 1 or len(next(iter(keys))) != 1:
        raise FeatureStoreError(f"the views of {list(refs)} must share one join key, have {keys}")
    ((join_key, value_type),) = next(iter(keys))
    if value_type != ValueType.STRING:
        raise FeatureStoreError(f"join key {join_key!r} must be a string, is {value_type}")
    return join_key


class _LayoutReaderFacade:
    """What both online readers share: ``features``, ``key(id)`` (the stored key of one entity,
    Feast's ``serialize_entity_key`` layout) and ``fetch(ids)`` -> ``{feature: [value per id]}``
    (None where absent), delegated to the store's layout reader."""

    layout: Any
    features: Any

    def key(self, entity_id: str) -> bytes:
        return self.layout.key(entity_id)

    def fetch(self, ids: Sequence[str]) -> dict[str, list[Any]]:
        return self.layout.fetch(ids)


class RedisFeatureReader(_LayoutReaderFacade):
    """Reads features of one entity (from one or more of its views) for many ids from Feast's
    Redis layout (:class:`recsys.features.redis_layout.LayoutReader`: one ``HMGET`` per id,
    all in one pipeline, keys and values without protos), after checking ``refs`` against the
    registry.

    Args:
        store: a store whose online store is Redis (its project, views and entity).
        refs: ``view:feature`` references whose views share one (Utf8) join key.

    ``fetch(ids)`` -> ``{feature: [value per id]}`` (None where absent), equal to what
    :func:`online_features` returns for the same ids (tested).
    """

    def __init__(self, store: FeatureStore, refs: Sequence[str]) -> None:
        refs = check_refs(store, refs)
        join_key = _join_key(store, refs)
        self.client = _client_for(store)
        self.layout = LayoutReader(self.client, store.project, join_key, refs)
        self.features = self.layout.features

    def close(self) -> None:
        self.client.close()


def sqlite_path(store: FeatureStore) -> Path:
    """The file of ``store``'s SQLite online store (relative paths against the repository, as
    Feast resolves them); a store with another online store is a FeatureStoreError."""
    online = store.config.online_store
    if str(online.type) != "sqlite":
        raise FeatureStoreError(
            f"SqliteFeatureReader needs the SQLite online store, this store has {online.type!r}"
        )
    path = Path(online.path)
    if not path.is_absolute() and store.config.repo_path:
        path = Path(store.config.repo_path) / path
    return path


class SqliteFeatureReader(_LayoutReaderFacade):
    """:class:`RedisFeatureReader`'s interface on the SQLite online store: reads the view
    tables directly (:class:`recsys.features.sqlite_layout.SqliteLayoutReader`, read-only).

    Args:
        store: a store whose online store is SQLite (its project, views, entity and file).
        refs: ``view:feature`` references whose views share one (Utf8) join key.

    ``fetch(ids)`` -> ``{feature: [value per id]}`` (None where absent), equal to what
    :func:`online_features` returns for the same ids (tested).
    """

    def __init__(self, store: FeatureStore, refs: Sequence[str]) -> None:
        refs = check_refs(store, refs)
        join_key = _join_key(store, refs)
        self.conn = open_online_db(sqlite_path(store))
        self.layout = SqliteLayoutReader(self.conn, store.project, join_key, refs)
        self.features = self.layout.features

    def close(self) -> None:
        self.conn.close()
