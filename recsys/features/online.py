"""Online features by id: through Feast (:func:`online_features`, any online store) and a
fast path for the Redis online store (:class:`RedisFeatureReader`) that reads Feast's own
Redis layout with one pipeline of ``HMGET`` and decodes the values, without Feast's
per-request Python (registry lookups, entity-key protos, response building).

Feast's Redis layout (``entity_key_serialization_version: 3``): one hash per entity, key =
``serialize_entity_key(entity) + project``, a field per feature = the little-endian murmur3
of ``"<view>:<feature>"`` holding a serialized ``ValueProto``, and ``_ts:<view>`` the row's
event time. Missing entities and features read as None; :func:`fill_defaults` gives them the
values training gives them (:data:`recsys.features.schema.DEFAULTS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from recsys.features.schema import DEFAULTS
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


class RedisFeatureReader:
    """Reads one feature view's features for many ids from Feast's Redis layout.

    Args:
        store: a store whose online store is Redis (its project, view and entity).
        view: the feature view.
        features: its features to read (default: all).

    ``fetch(ids)`` -> ``{feature: [value per id]}`` (None where absent), equal to what
    :func:`online_features` returns for the same ids (tested).
    """

    def __init__(
        self, store: FeatureStore, view: str, features: Sequence[str] | None = None
    ) -> None:
        from feast.infra.online_stores.helpers import _mmh3

        fv = store.get_feature_view(view)
        names = [f.name for f in fv.features]
        self.features = list(features) if features is not None else names
        check_refs(store, [f"{view}:{f}" for f in self.features])
        if len(fv.entity_columns) != 1:
            raise FeatureStoreError(f"view {view!r} must have one entity, has {fv.entities}")
        self.join_key = fv.entity_columns[0].name
        self.value_type = fv.entity_columns[0].dtype.to_value_type()
        self.project = store.project.encode("utf-8")
        self.fields = [_mmh3(f"{view}:{f}") for f in self.features]
        self.client = _client_for(store)

    def key(self, entity_id: Any) -> bytes:
        """The Redis key of one entity (Feast's serialization plus the project)."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        value = (
            Value(string_val=str(entity_id))
            if self.value_type.name == "STRING"
            else Value(int64_val=int(entity_id))
        )
        entity = EntityKey(join_keys=[self.join_key], entity_values=[value])
        return serialize_entity_key(entity, entity_key_serialization_version=3) + self.project

    def fetch(self, ids: Sequence[Any]) -> dict[str, list[Any]]:
        """``{feature: [value per id]}`` in one round trip (None where absent)."""
        from feast.protos.feast.types.Value_pb2 import Value

        with self.client.pipeline(transaction=False) as pipe:
            for entity_id in ids:
                pipe.hmget(self.key(entity_id), self.fields)
            replies = pipe.execute()
        out: dict[str, list[Any]] = {f: [] for f in self.features}
        for reply in replies:
            for feature, raw in zip(self.features, reply):
                if raw is None:
                    out[feature].append(None)
                    continue
                value = Value.FromString(raw)
                kind = value.WhichOneof("val")
                out[feature].append(None if kind in (None, "null_val") else getattr(value, kind))
        return out

    def close(self) -> None:
        self.client.close()
