"""Backend settings validation and opening storage: clear errors that say what and where."""

from __future__ import annotations

import pytest

from serving.social.clock import ManualClock
from serving.social.settings import settings_from_mapping
from serving.social.storage.factory import open_storage


def test_defaults_match_the_design() -> None:
    settings = settings_from_mapping({})
    assert settings.storage == "embedded"
    assert settings.fanout.threshold == 100_000 and settings.fanout.timeline_cap == 800
    assert settings.stories.ttl_s == 86_400
    assert settings.media.image_sizes == (1440, 250)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fanout": {"treshold": 5}}, r"unknown key\(s\) \['treshold'\] in fanout"),
        ({"storage": "cassandra"}, "storage must be 'embedded' or 'production'"),
        ({"ranker": {"kind": "tensorflow"}}, "ranker.kind"),
        ({"ranker": {"kind": "onnx"}}, "ranker.kind=onnx needs ranker.export_dir"),
        ({"ranker": {"kind": "http"}}, "ranker.kind=http needs ranker.url"),
        ({"fanout": {"timeline_cap": 0}}, "fanout.timeline_cap must be >= 1"),
        ({"media": {"video_codecs": ["h264", "vp9"]}}, r"unknown codec\(s\) \['vp9'\]"),
        ({"fanout": 3}, "fanout must be a mapping"),
    ],
)
def test_bad_settings_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_mapping(values)


def test_unreachable_redis_is_a_clear_error_without_the_password(tmp_path) -> None:
    settings = settings_from_mapping(
        {
            "storage": "production",
            # PostgreSQL is not reached either: the metadata check fails first, naming the host
            "postgres_url": "postgresql+psycopg://u:secret@127.0.0.1:1/none",
            "redis_url": "redis://:hunter2@127.0.0.1:1/0",
            "data_dir": str(tmp_path),
            "auto_migrate": False,
        }
    )
    with pytest.raises(RuntimeError) as error:
        open_storage(settings, ManualClock())
    assert "127.0.0.1:1" in str(error.value) and "secret" not in str(error.value)


def test_unreachable_redis_message(postgres_url, tmp_path) -> None:
    settings = settings_from_mapping(
        {
            "storage": "production",
            "postgres_url": postgres_url,
            "redis_url": "redis://:hunter2@127.0.0.1:1/0",
            "data_dir": str(tmp_path),
        }
    )
    with pytest.raises(RuntimeError, match=r"Redis at redis://\*\*\*@127.0.0.1:1/0 is not reach"):
        open_storage(settings, ManualClock())
