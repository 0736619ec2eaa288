"""What Feast's Redis and SQLite online stores share, read without Feast (``import feast``
loads torch, which the inference service must not): the serialized entity key of one string
join key, the checked ``view:feature`` references, and scalar ``ValueProto`` decoding, in the
standard library only.

The entity key (``entity_key_serialization_version: 3``, Feast's ``serialize_entity_key`` of
one string key): ``<I 1> <I STRING=2> <I len(join_key)> join_key <I STRING=2> <I len(id)> id``
(little-endian ``uint32``). The Redis store appends the project's name to it for the hash's
key (:mod:`recsys.features.redis_layout`); the SQLite store keeps it as the ``entity_key``
blob of each row (:mod:`recsys.features.sqlite_layout`).

Only scalar values are decoded (bytes, string, int32, int64, double, float, bool, unix
timestamp, null): the kinds the social views hold; anything else is a ``ValueError``.

Example:
    >>> decode_value(b"\\x12\\x02US")
    'US'
    >>> EntityKey("user_id").key(7)[:8]
    b'\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x00'
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

STRING = 2  # feast.value_type.ValueType.STRING
_VARINT_FIELDS = {3: "int32", 4: "int64", 7: "bool", 8: "int64"}
_NULL_FIELD = 19


def split_refs(refs: Sequence[str]) -> list[tuple[str, str]]:
    """``["view:feature", ...]`` -> ``[(view, feature), ...]``; a reference without both parts
    is a ``ValueError`` naming it."""
    pairs: list[tuple[str, str]] = []
    for ref in refs:
        view, sep, feature = ref.partition(":")
        if not (sep and view and feature):
            raise ValueError(f"feature reference {ref!r} is not 'view:feature'")
        pairs.append((view, feature))
    return pairs


class EntityKey:
    """Feast's serialized entity key (version 3) of one string join key ``join_key``."""

    def __init__(self, join_key: str) -> None:
        name = join_key.encode("utf-8")
        self._prefix = struct.pack("<III", 1, STRING, len(name)) + name

    def key(self, entity_id: Any) -> bytes:
        """The serialized key of one id (``str(entity_id)`` as the string value)."""
        value = str(entity_id).encode("utf-8")
        return self._prefix + struct.pack("<II", STRING, len(value)) + value


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
