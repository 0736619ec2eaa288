"""Feast's Redis online-store layout read without Feast (``import feast`` loads torch, which
the inference service must not): keys, hash fields and scalar ``ValueProto`` values, in the
standard library plus ``mmh3`` and ``redis``.

The layout (``entity_key_serialization_version: 3``), one hash per entity:

* key: ``<I 1> <I STRING=2> <I len(join_key)> join_key <I STRING=2> <I len(id)> id`` +
  project (Feast's ``serialize_entity_key`` of one string key, then the project's name);
* field ``mmh3_32("<view>:<feature>")`` (unsigned, 4 bytes little-endian): a serialized
  ``ValueProto``; ``_ts:<view>``: the row's event time.

Only scalar values are decoded (bytes, string, int32, int64, double, float, bool, unix
timestamp, null): the kinds the social views hold; anything else is a ``ValueError``.
:class:`recsys.features.online.RedisFeatureReader` adds the registry's checks on top; the tests
compare both with Feast's own read.

Example:
    >>> decode_value(b"\\x12\\x02US")
    'US'
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

_STRING = 2  # feast.value_type.ValueType.STRING
_VARINT_FIELDS = {3: "int32", 4: "int64", 7: "bool", 8: "int64"}
_NULL_FIELD = 19


def field_key(view: str, feature: str) -> bytes:
    """The hash field of ``view:feature`` (Feast's ``_mmh3``)."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_value(raw: bytes) -> Any:
    """One serialized ``ValueProto`` -> its Python value (None for an unset or null value)."""
    if not raw:
        return None
    tag, pos = _varint(raw, 0)
    number, wire = tag >> 3, tag & 7
    if number in (1, 2) and wire == 2:
        length, pos = _varint(raw, pos)
        data = raw[pos : pos + length]
        return data if number == 1 else data.decode("utf-8")
    if number in _VARINT_FIELDS and wire == 0:
        value, _ = _varint(raw, pos)
        if _VARINT_FIELDS[number] == "bool":
            return bool(value)
        return value - (1 << 64) if value >= 1 << 63 else value
    if number == 5 and wire == 1:
        return struct.unpack_from("<d", raw, pos)[0]
    if number == 6 and wire == 5:
        return struct.unpack_from("<f", raw, pos)[0]
    if number == _NULL_FIELD:
        return None
    raise ValueError(f"unsupported Feast value (field {number}, wire type {wire})")


class LayoutReader:
    """Reads ``refs`` (``view:feature``, views of one entity with a string join key) for many
    ids: one ``HMGET`` per id in one pipeline of ``client`` (a ``redis.Redis``)."""

    def __init__(self, client: Any, project: str, join_key: str, refs: Sequence[str]) -> None:
        for ref in refs:
            view, sep, feature = ref.partition(":")
            if not (sep and view and feature):
                raise ValueError(f"feature reference {ref!r} is not 'view:feature'")
        self.client = client
        self.features = [r.partition(":")[2] for r in refs]
        self.fields = [field_key(*r.split(":", 1)) for r in refs]
        name = join_key.encode("utf-8")
        self._prefix = struct.pack("<III", 1, _STRING, len(name)) + name
        self._project = project.encode("utf-8")

    def key(self, entity_id: Any) -> bytes:
        """The Redis key of one entity."""
        value = str(entity_id).encode("utf-8")
        return self._prefix + struct.pack("<II", _STRING, len(value)) + value + self._project

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
