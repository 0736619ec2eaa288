"""inspect_upload: formats from magic bytes, declared types, limits, decompression bombs."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import Image

from serving.social.domain import BadRequest, PayloadTooLarge, UnsupportedMedia
from serving.social.media import sniff
from serving.social.media.sniff import (
    ALLOWED_IMAGE_FORMATS,
    ALLOWED_VIDEO_FORMATS,
    detect_format,
    heic_supported,
    inspect_upload,
)
from serving.social.settings import MediaSettings

SETTINGS = MediaSettings()


def _image_bytes(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 60)[: len(mode)] if mode != "P" else 3).save(out, fmt)
    return out.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG (valid CRCs) whose IHDR claims ``width`` x ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free" + b"\0" * 32


def _ebml(doctype: bytes) -> bytes:
    element = b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    header = b"\x42\x86\x81\x01" + element
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(header)]) + header + b"\0" * 32


# --- accepted formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected", "content_type"),
    [("JPEG", "jpeg", "image/jpeg"), ("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp")],
)
def test_images_detected_with_header_dimensions(fmt: str, expected: str, content_type: str) -> None:
    data = _image_bytes(fmt, (40, 30))
    info = inspect_upload(data, None, SETTINGS)
    assert (info.kind, info.format, info.content_type) == ("image", expected, content_type)
    assert (info.width, info.height) == (40, 30)
    assert info.size_bytes == len(data)


def test_heic_detected() -> None:
    if not heic_supported():
        pytest.skip("pillow_heif is not importable")
    import pillow_heif

    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif has no HEIF encoder")
    data = _image_bytes("HEIF", (64, 48))
    info = inspect_upload(data, "image/heic", SETTINGS)
    assert (info.kind, info.format, info.content_type) == ("image", "heic", "image/heic")
    assert (info.width, info.height) == (64, 48)
    assert inspect_upload(data, "image/heif", SETTINGS).format == "heic"


def test_heic_refused_when_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sniff, "heic_supported", lambda: False)
    with pytest.raises(UnsupportedMedia) as caught:
        inspect_upload(_ftyp(b"heic", b"mif1", b"heic"), None, SETTINGS)
    assert "heic" in caught.value.message
    assert caught.value.field == "file"


@pytest.mark.parametrize(
    ("data", "fmt", "content_type"),
    [
        (_ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "mp4", "video/mp4"),
        (_ftyp(b"mp42", b"mp42", b"isom"), "mp4", "video/mp4"),
        (_ftyp(b"qt  ", b"qt  "), "quicktime", "video/quicktime"),
        (b"\x00\x00\x00\x08wide" + b"\x00\x00\x10\x00mdat" + b"\0" * 32, "quicktime", None),
        (_ebml(b"webm"), "webm", "video/webm"),
    ],
)
def test_videos_detected(data: bytes, fmt: str, content_type: str | None) -> None:
    info = inspect_upload(data, content_type, SETTINGS)
    assert (info.kind, info.format) == ("video", fmt)
    assert info.content_type == sniff.CONTENT_TYPES[fmt]
    assert info.width is None and info.height is None


def test_allowed_lists() -> None:
    assert ALLOWED_IMAGE_FORMATS == ("jpeg", "png", "webp", "heic")
    assert ALLOWED_VIDEO_FORMATS == ("mp4", "webm", "quicktime")


# --- declared content types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "declared",
    [None, "", "application/octet-stream", "image/jpeg", "image/jpg", "IMAGE/JPEG; charset=x"],
)
def test_declarations_that_agree(declared: str | None) -> None:
    assert inspect_upload(_image_bytes("JPEG"), declared, SETTINGS).format == "jpeg"


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (_image_bytes("JPEG"), "image/png"),
        (_image_bytes("PNG"), "image/jpeg"),
        (_image_bytes("JPEG"), "video/mp4"),
        (_ftyp(b"isom", b"isom"), "image/jpeg"),
        (_ebml(b"webm"), "video/mp4"),
        (_image_bytes("WEBP"), "text/plain"),
    ],
)
def test_declared_type_disagreeing_is_bad_request(data: bytes, declared: str) -> None:
    with pytest.raises(BadRequest) as caught:
        inspect_upload(data, declared, SETTINGS)
    assert caught.value.field == "file"
    assert f"declared {declared}" in caught.value.message
    assert "but the file is" in caught.value.message
    assert type(caught.value) is BadRequest


def test_bytes_decide_not_the_declaration() -> None:
    # a GIF declared as JPEG is still a GIF: refused as such
    with pytest.raises(UnsupportedMedia, match="gif"):
        inspect_upload(_image_bytes("GIF", mode="P"), "image/jpeg", SETTINGS)


# --- bad media ----------------------------------------------------------------------------------


def test_zero_bytes() -> None:
    with pytest.raises(BadRequest, match="empty") as caught:
        inspect_upload(b"", "image/jpeg", SETTINGS)
    assert caught.value.field == "file"


def test_too_short() -> None:
    with pytest.raises(BadRequest, match="too short") as caught:
        inspect_upload(b"\xff\xd8\xff", None, SETTINGS)
    assert caught.value.field == "file"


@pytest.mark.parametrize(
    "data",
    [
        _image_bytes("PNG")[:20],  # PNG signature and half an IHDR
        b"\xff\xd8\xff\xe0" + b"\x00" * 12,  # JPEG SOI then nothing usable
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8,  # WebP container, broken frame
    ],
)
def test_truncated_header_is_bad_request(data: bytes) -> None:
    with pytest.raises(BadRequest, match="unreadable") as caught:
        inspect_upload(data, None, SETTINGS)
    assert caught.value.field == "file"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (_image_bytes("GIF", mode="P"), "gif"),
        (_image_bytes("BMP"), "bmp"),
        (_image_bytes("TIFF"), "tiff"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', "svg"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "svg"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "pdf"),
        (_ftyp(b"avif", b"avif", b"mif1"), "avif"),
        (_ebml(b"matroska"), "matroska"),
        (b"PK\x03\x04" + b"\0" * 40, "zip"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "html"),
    ],
)
def test_refused_formats_are_named(data: bytes, name: str) -> None:
    assert detect_format(data) == name
    with pytest.raises(UnsupportedMedia) as caught:
        inspect_upload(data, None, SETTINGS)
    message = caught.value.message
    assert name in message
    assert "allowed: jpeg, png, webp" in message and "mp4, webm, quicktime" in message
    assert caught.value.field == "file"


def test_random_bytes_unsupported() -> None:
    data = os.urandom(2048)
    data = b"\x13\x37" + data[2:]  # no accidental signature
    with pytest.raises(UnsupportedMedia, match="unrecognized"):
        inspect_upload(data, "image/jpeg", SETTINGS)


def test_decompression_bomb_refused_from_header() -> None:
    bomb = _png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises((PayloadTooLarge, BadRequest)) as caught:
        inspect_upload(bomb, "image/png", SETTINGS)
    message = caught.value.message.lower()
    assert "decompression bomb" in message or "too many pixels" in message
    assert caught.value.field == "file"


def test_pixels_over_settings_limit_but_under_pillows() -> None:
    # 8000 x 8000 = 64 M pixels: below Pillow's own bomb threshold, above ours (50 M)
    with pytest.raises(PayloadTooLarge, match="too many pixels"):
        inspect_upload(_png_claiming(8000, 8000), None, SETTINGS)
    small_limit = MediaSettings(max_image_pixels=100)
    with pytest.raises(PayloadTooLarge, match="too many pixels"):
        inspect_upload(_image_bytes("JPEG", (20, 10)), None, small_limit)


def test_side_over_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="side") as caught:
        inspect_upload(_png_claiming(13_000, 10), None, SETTINGS)
    assert "13000x10" in caught.value.message


def test_over_byte_limit() -> None:
    data = _image_bytes("PNG")
    limited = MediaSettings(max_image_bytes=len(data) - 1)
    with pytest.raises(PayloadTooLarge, match="too large") as caught:
        inspect_upload(data, None, limited)
    assert caught.value.field == "file"
    assert inspect_upload(data, None, MediaSettings(max_image_bytes=len(data))).format == "png"

    video = _ftyp(b"isom", b"isom")
    with pytest.raises(PayloadTooLarge, match="video is too large"):
        inspect_upload(video, None, MediaSettings(max_video_bytes=len(video) - 1))
    # the image limit does not apply to videos
    assert inspect_upload(video, None, MediaSettings(max_image_bytes=1)).kind == "video"
