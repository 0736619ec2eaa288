"""Feast's Redis online-store layout read without Feast (``import feast`` loads torch, which
the inference service must not): keys, hash fields and scalar ``ValueProto`` values, in the
standard library plus ``mmh3`` and ``redis``.

The layout (``entity_key_serialization_version: 3``), one hash per entity:

* key: the serialized entity key (:class:`recsys.features.layout.EntityKey`: Feast's
  ``serialize_entity_key`` of one string key) + the project's name;
* field ``mmh3_32("<view>:<feature>")`` (unsigned, 4 bytes little-endian): a serialized
  ``ValueProto`` (:func:`recsys.features.layout.decode_value`, re-exported here);
  ``_ts:<view>``: the row's event time.

:class:`recsys.features.online.RedisFeatureReader` adds the registry's checks on top; the tests
compare both with Feast's own read. :mod:`recsys.features.sqlite_layout` reads the SQLite
online store with the same interface.

Example:
    >>> decode_value(b"\\x12\\x02US")
    'US'
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from recsys.features.layout import EntityKey, decode_value, split_refs

__all__ = ["LayoutReader", "decode_value", "field_key"]


def field_key(view: str, feature: str) -> bytes:
    """The hash field of ``view:feature`` (Feast's ``_mmh3``)."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


class LayoutReader:
    """Reads ``refs`` (``view:feature``, views of one entity with a string join key) for many
    ids: one ``HMGET`` per id in one pipeline of ``client`` (a ``redis.Redis``)."""

    def __init__(self, client: Any, project: str, join_key: str, refs: Sequence[str]) -> None:
        pairs = split_refs(refs)
        self.client = client
        self.features = [feature for _, feature in pairs]
        self.fields = [field_key(view, feature) for view, feature in pairs]
        self._entity = EntityKey(join_key)
        self._project = project.encode("utf-8")

    def key(self, entity_id: Any) -> bytes:
        """The Redis key of one entity."""
        return self._entity.key(entity_id) + self._project

    def fetch(self, ids: Sequence[Any]) -> dict[str, list[Any]]:
        """``{feature: [value per id]}`` in one round trip (None where absent)."""
        with self.client.pipeline(transaction=False) as pipe:
            for entity_id in ids:
                pipe.hmget(self.key(entity_id), self.fields)
            replies = pipe.execute()
        columns: list[list[Any]] = [[] for _ in self.features]
        for reply in replies:
            for column, raw in zip(columns, reply):
                column.append(None if raw is None else decode_value(raw))
        return dict(zip(self.features, columns))
