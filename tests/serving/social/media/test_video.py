"""probe / process_video with the real ffmpeg on tiny generated clips (1 s, 160x120)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from serving.social.media import MediaProcessingError, available_encoders, probe, process_video
from serving.social.media.thumbhash import thumbhash_to_rgba
from serving.social.media.video import (
    AV1_ENCODERS,
    _rotation,
    output_size,
    parse_encoders,
)
from serving.social.settings import MediaSettings

SETTINGS = MediaSettings()
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
NO_FFMPEG = "ffmpeg/ffprobe not installed (scripts/services.sh start installs them)"
AV1_NOTE = "av1 skipped: no AV1 encoder (libsvtav1/libaom-av1) in this ffmpeg"


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny test clips, made once: ``av`` (H.264 + AAC, with GPS and title metadata),
    ``silent`` (no audio), ``audio`` (AAC only), ``garbage`` (random bytes)."""
    if FFMPEG is None or FFPROBE is None:
        pytest.skip(NO_FFMPEG)
    folder = tmp_path_factory.mktemp("clips")
    testsrc = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1"]
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    fast = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    clips = {name: folder / f"{name}.mp4" for name in ("av", "silent", "audio")}
    _ffmpeg(
        *testsrc,
        *sine,
        *fast,
        "-c:a",
        "aac",
        "-shortest",
        "-metadata",
        "location=+52.5000+013.4000/",
        "-metadata",
        "title=secret title",
        str(clips["av"]),
    )
    _ffmpeg(*testsrc, *fast, str(clips["silent"]))
    _ffmpeg(*sine, "-c:a", "aac", str(clips["audio"]))
    clips["garbage"] = folder / "garbage.mp4"
    clips["garbage"].write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(4000))
    return clips


def _streams(path: Path) -> tuple[dict, list[dict]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    report = json.loads(out)
    return report["format"], report["streams"]


# --- pure helpers (no ffmpeg needed) -----------------------------------------------------------


def test_output_size() -> None:
    assert output_size(1920, 1080, 720) == (1280, 720)
    assert output_size(1080, 1920, 720) == (720, 1280)  # portrait: the short side is capped
    assert output_size(160, 120, 720) == (160, 120)  # never upscaled
    assert output_size(161, 121, 720) == (160, 120)  # even
    assert output_size(1, 1, 720) == (2, 2)


def test_parse_encoders() -> None:
    listing = """Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC
 V..... libsvtav1            SVT-AV1 encoder (codec av1)
 A..... aac                  AAC (Advanced Audio Coding)
"""
    assert parse_encoders(listing) == {"libx264", "libsvtav1", "aac"}


def test_rotation_parsing() -> None:
    assert _rotation({"side_data_list": [{"rotation": -90}]}) == 270
    assert _rotation({"tags": {"rotate": "90"}}) == 90
    assert _rotation({}) == 0
    assert _rotation({"tags": {"rotate": "nonsense"}}) == 0


def test_missing_ffmpeg_binary(tmp_path: Path) -> None:
    settings = MediaSettings(ffmpeg=str(tmp_path / "no-ffmpeg"))
    with pytest.raises(MediaProcessingError, match="ffmpeg not found") as caught:
        available_encoders(settings)
    assert "no-ffmpeg" in caught.value.reason


def test_missing_ffprobe_binary(tmp_path: Path) -> None:
    settings = MediaSettings(ffprobe=str(tmp_path / "no-ffprobe"))
    with pytest.raises(MediaProcessingError, match="not found"):
        probe(tmp_path / "whatever.mp4", settings)


# --- with ffmpeg ---------------------------------------------------------------------------------


def test_probe(clips: dict[str, Path]) -> None:
    info = probe(clips["av"], SETTINGS)
    assert (info.width, info.height) == (160, 120)
    assert info.duration == pytest.approx(1.0, abs=0.15)
    assert info.codec == "h264"
    assert info.has_audio
    assert not probe(clips["silent"], SETTINGS).has_audio


def test_probe_rejects(clips: dict[str, Path]) -> None:
    with pytest.raises(MediaProcessingError, match="unreadable video"):
        probe(clips["garbage"], SETTINGS)
    with pytest.raises(MediaProcessingError, match="no video stream"):
        probe(clips["audio"], SETTINGS)
    with pytest.raises(MediaProcessingError, match="too long"):
        probe(clips["av"], MediaSettings(max_video_seconds=0.5))


def test_available_encoders(clips: dict[str, Path]) -> None:
    encoders = available_encoders(SETTINGS)
    assert "libx264" in encoders and "aac" in encoders
    assert available_encoders(SETTINGS) == encoders  # cached


def test_process_video(clips: dict[str, Path], tmp_path: Path) -> None:
    has_av1 = any(name in available_encoders(SETTINGS) for name in AV1_ENCODERS)
    result = process_video(clips["av"], tmp_path / "work", SETTINGS)
    names = [r.name for r in result.renditions]
    assert names == (["h264", "av1", "poster"] if has_av1 else ["h264", "poster"])
    assert (result.width, result.height) == (160, 120)
    assert result.duration == pytest.approx(1.0, abs=0.15)
    assert result.notes == ([] if has_av1 else [AV1_NOTE])
    by_name = {r.name: r for r in result.renditions}

    h264 = by_name["h264"]
    assert h264.path.parent == tmp_path / "work"
    assert h264.content_type == "video/mp4"
    fmt, streams = _streams(h264.path)
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = [s for s in streams if s["codec_type"] == "audio"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 160, 120)
    assert video["pix_fmt"] == "yuv420p"
    assert [a["codec_name"] for a in audio] == ["aac"]
    assert "location" not in (fmt.get("tags") or {})  # GPS metadata dropped
    assert "title" not in (fmt.get("tags") or {})
    data = h264.path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart

    if has_av1:
        _, streams = _streams(by_name["av1"].path)
        codecs = sorted(s["codec_name"] for s in streams)
        assert codecs == ["aac", "av1"]

    poster = by_name["poster"]
    assert poster.content_type == "image/jpeg"
    with Image.open(poster.path) as image:
        assert (image.format, image.size) == ("JPEG", (160, 120))
    width, height, _ = thumbhash_to_rgba(result.thumbhash)
    assert width > height

    assert (h264.width, h264.height, h264.size_bytes) == (160, 120, len(data))


def test_scaled_down_and_silent(clips: dict[str, Path], tmp_path: Path) -> None:
    settings = MediaSettings(video_height=60, video_codecs=("h264",))
    result = process_video(clips["silent"], tmp_path, settings)
    assert [r.name for r in result.renditions] == ["h264", "poster"]
    assert (result.width, result.height) == (80, 60)
    _, streams = _streams(result.renditions[0].path)
    assert [(s["codec_type"], s["width"], s["height"]) for s in streams] == [("video", 80, 60)]
    with Image.open(result.renditions[1].path) as image:
        assert image.size == (80, 60)


def test_missing_av1_encoder_is_a_note(clips: dict[str, Path], tmp_path: Path) -> None:
    settings = MediaSettings(video_height=60)
    result = process_video(clips["silent"], tmp_path, settings, encoders={"libx264", "aac"})
    assert [r.name for r in result.renditions] == ["h264", "poster"]
    assert result.notes == [AV1_NOTE]
    assert not (tmp_path / "av1.mp4").exists()


def test_missing_h264_encoder_fails(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaProcessingError, match=r"no H\.264 encoder"):
        process_video(clips["silent"], tmp_path, SETTINGS, encoders={"libsvtav1"})


def test_av1_only_without_encoder_fails(clips: dict[str, Path], tmp_path: Path) -> None:
    settings = MediaSettings(video_codecs=("av1",))
    with pytest.raises(MediaProcessingError, match="no video rendition") as caught:
        process_video(clips["silent"], tmp_path, settings, encoders={"libx264"})
    assert "no AV1 encoder" in caught.value.reason


def test_garbage_fails(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaProcessingError) as caught:
        process_video(clips["garbage"], tmp_path, SETTINGS)
    assert caught.value.reason


def test_missing_ffmpeg_in_process_video(clips: dict[str, Path], tmp_path: Path) -> None:
    settings = MediaSettings(ffmpeg=str(tmp_path / "nope" / "ffmpeg"))
    with pytest.raises(MediaProcessingError, match="ffmpeg not found"):
        process_video(clips["silent"], tmp_path, settings)
    with pytest.raises(MediaProcessingError, match="ffmpeg not found"):
        process_video(clips["silent"], tmp_path, settings, encoders={"libx264"})


def test_ffmpeg_failure_reports_stderr_tail(clips: dict[str, Path], tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\necho 'some banner' >&2\necho 'Error: encoder exploded' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    settings = dataclasses.replace(SETTINGS, ffmpeg=str(fake))
    with pytest.raises(MediaProcessingError, match="h264 transcode failed") as caught:
        process_video(clips["silent"], tmp_path / "w", settings, encoders={"libx264"})
    assert "encoder exploded" in caught.value.reason


def test_ffmpeg_timeout(clips: dict[str, Path], tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexec sleep 5\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    settings = dataclasses.replace(SETTINGS, ffmpeg=str(fake), ffmpeg_timeout_s=0.3)
    with pytest.raises(MediaProcessingError, match="timed out"):
        process_video(clips["silent"], tmp_path / "w", settings, encoders={"libx264"})


@pytest.mark.parametrize(
    ("container", "fmt", "codec_args"),
    [
        ("mov", "quicktime", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]),
        ("webm", "webm", ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "200k"]),
    ],
)
def test_real_containers_sniffed_and_processed(
    clips: dict[str, Path], tmp_path: Path, container: str, fmt: str, codec_args: list[str]
) -> None:
    from serving.social.media import inspect_upload

    encoder = codec_args[1]
    if encoder not in available_encoders(SETTINGS):
        pytest.skip(f"this ffmpeg has no {encoder}")
    src = tmp_path / f"clip.{container}"
    _ffmpeg("-i", str(clips["silent"]), "-t", "0.5", *codec_args, str(src))
    info = inspect_upload(src.read_bytes(), None, SETTINGS)
    assert (info.kind, info.format) == ("video", fmt)
    settings = MediaSettings(video_height=60, video_codecs=("h264",))
    result = process_video(src, tmp_path / "work", settings)
    assert [r.name for r in result.renditions] == ["h264", "poster"]
    assert (result.width, result.height) == (80, 60)


def test_libaom_fallback(clips: dict[str, Path], tmp_path: Path) -> None:
    if "libaom-av1" not in available_encoders(SETTINGS):
        pytest.skip("this ffmpeg has no libaom-av1")
    settings = MediaSettings(video_height=60)
    result = process_video(clips["silent"], tmp_path, settings, encoders={"libx264", "libaom-av1"})
    assert [r.name for r in result.renditions] == ["h264", "av1", "poster"]
    _, streams = _streams(result.renditions[1].path)
    assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("av1", 80, 60)]
