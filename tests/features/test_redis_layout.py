"""The Feast-free reader of Feast's Redis layout against Feast's own encoders."""

from __future__ import annotations

import pytest

from recsys.features.redis_layout import LayoutReader, decode_value, field_key


def test_values_decode_as_feasts_protobuf_does() -> None:
    from feast.protos.feast.types.Value_pb2 import Null, Value

    values = [
        Value(string_val="US"),
        Value(string_val=""),
        Value(string_val="naïve ✓"),
        Value(bytes_val=b"\x00\xff"),
        Value(int64_val=0),
        Value(int64_val=-7),
        Value(int64_val=2**62),
        Value(int32_val=-3),
        Value(double_val=2.5),
        Value(float_val=1.5),
        Value(bool_val=True),
        Value(unix_timestamp_val=1_700_000_000),
        Value(null_val=Null.NULL),
        Value(),
    ]
    for value in values:
        kind = value.WhichOneof("val")
        expected = None if kind in (None, "null_val") else getattr(value, kind)
        assert decode_value(value.SerializeToString()) == expected, value
    with pytest.raises(ValueError, match="unsupported Feast value"):
        decode_value(Value(int64_list_val={"val": [1, 2]}).SerializeToString())


def test_keys_and_fields_are_feasts() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    reader = LayoutReader(None, "social", "user_id", ["user_profile:country"])
    for uid in ("0", "12345", "ü"):
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=uid)])
        assert reader.key(uid) == serialize_entity_key(key, 3) + b"social"
    assert field_key("user_profile", "country") == _mmh3("user_profile:country")
    with pytest.raises(ValueError, match="not 'view:feature'"):
        LayoutReader(None, "social", "user_id", ["country"])
