"""process_image: orientation, metadata stripping, ICC, renditions, alpha, corrupt input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from serving.social.media import MediaProcessingError, heic_supported, images, process_image
from serving.social.media.images import rendition_size
from serving.social.media.thumbhash import (
    thumbhash_to_approximate_aspect_ratio,
    thumbhash_to_rgba,
)
from serving.social.settings import MediaSettings

SETTINGS = MediaSettings()
RED, BLUE = (230, 20, 20), (20, 20, 230)


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _halves(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image


def _exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCamMaker"
    exif[0x0110] = "SecretCamModel"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    gps[3] = "E"
    gps[4] = (13.0, 24.0, 36.0)
    return exif


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _close(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel[:3], colour, strict=True))


def _no_metadata(data: bytes) -> None:
    image = _decoded(data)
    assert "exif" not in image.info
    assert len(image.getexif()) == 0
    assert b"Exif\x00\x00" not in data
    assert b"SecretCam" not in data
    assert b"secret comment" not in data
    assert "xmp" not in image.info


# --- orientation and metadata -------------------------------------------------------------------


def test_exif_orientation_applied_and_exif_stripped() -> None:
    data = _save(_halves((40, 20)), "JPEG", exif=_exif_with_gps(6), quality=95)
    result = process_image(data, SETTINGS)
    # orientation 6 = rotate 90 degrees clockwise for display: 40x20 becomes 20x40, and the
    # source's left (red) column ends up at the top
    assert (result.width, result.height) == (20, 40)
    for rendition in result.renditions:
        assert rendition.content_type == "image/jpeg"
        assert (rendition.width, rendition.height) == (20, 40)
        out = _decoded(rendition.data).convert("RGB")
        assert out.size == (20, 40)
        assert _close(out.getpixel((10, 5)), RED)
        assert _close(out.getpixel((10, 35)), BLUE)
        _no_metadata(rendition.data)


def test_gps_and_comments_stripped_icc_kept() -> None:
    icc = _srgb_icc()
    data = _save(
        _halves((64, 48)),
        "JPEG",
        exif=_exif_with_gps(1),
        icc_profile=icc,
        comment=b"secret comment",
    )
    assert b"SecretCam" in data and b"secret comment" in data
    result = process_image(data, SETTINGS)
    for rendition in result.renditions:
        _no_metadata(rendition.data)
        assert _decoded(rendition.data).info.get("icc_profile") == icc


def test_icc_kept_in_webp_with_alpha() -> None:
    icc = _srgb_icc()
    image = Image.new("RGBA", (50, 40), (10, 200, 10, 128))
    result = process_image(_save(image, "PNG", icc_profile=icc), SETTINGS)
    for rendition in result.renditions:
        assert rendition.content_type == "image/webp"
        assert _decoded(rendition.data).info.get("icc_profile") == icc


def test_malformed_exif_is_ignored() -> None:
    clean = _save(_halves((40, 20)), "JPEG")
    # an APP1 Exif segment whose TIFF header is garbage, right after SOI
    payload = b"Exif\x00\x00" + b"XX\x00\x2a\xff\xff\xff\xf0" + b"\x07" * 30
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    broken = clean[:2] + app1 + clean[2:]
    result = process_image(broken, SETTINGS)
    assert (result.width, result.height) == (40, 20)  # no rotation
    for rendition in result.renditions:
        _no_metadata(rendition.data)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_orientation_tag_with_broken_ifd_is_ignored() -> None:
    # a valid TIFF header whose IFD claims far more entries than exist
    payload = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\xff" + b"\x01\x12" * 3
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    clean = _save(_halves((30, 10)), "JPEG")
    result = process_image(clean[:2] + app1 + clean[2:], SETTINGS)
    assert {(r.width, r.height) for r in result.renditions} == {(30, 10)}


def test_invalid_orientation_value_is_ignored() -> None:
    # orientation 9 does not exist; one IFD entry: tag 0x0112, SHORT, count 1, value 9
    ifd = b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09\x00\x00" + b"\0\0\0\0"
    payload = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + ifd
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    clean = _save(_halves((30, 10)), "JPEG")
    result = process_image(clean[:2] + app1 + clean[2:], SETTINGS)
    assert (result.width, result.height) == (30, 10)
    for rendition in result.renditions:
        _no_metadata(rendition.data)


def test_exif_transpose_failure_falls_back_to_no_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image: Image.Image) -> Image.Image:
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(images.ImageOps, "exif_transpose", broken)
    data = _save(_halves((40, 20)), "JPEG", exif=_exif_with_gps(6))
    result = process_image(data, SETTINGS)
    assert (result.width, result.height) == (40, 20)
    for rendition in result.renditions:
        _no_metadata(rendition.data)


# --- renditions ---------------------------------------------------------------------------------


def test_rendition_sizes_and_order() -> None:
    data = _save(_halves((1600, 800)), "JPEG", quality=70)
    result = process_image(data, SETTINGS)
    assert [r.name for r in result.renditions] == ["1440", "250"]
    sizes = {r.name: (r.width, r.height) for r in result.renditions}
    assert sizes == {"1440": (1440, 720), "250": (250, 125)}
    for rendition in result.renditions:
        assert _decoded(rendition.data).size == (rendition.width, rendition.height)
        assert rendition.size_bytes == len(rendition.data)
    assert (result.width, result.height) == (1600, 800)


def test_no_upscale_small_image_keeps_size_and_both_renditions_exist() -> None:
    result = process_image(_save(_halves((300, 200)), "PNG"), SETTINGS)
    sizes = {r.name: (r.width, r.height) for r in result.renditions}
    assert sizes == {"1440": (300, 200), "250": (250, 167)}
    tiny = process_image(_save(_halves((16, 9)), "PNG"), SETTINGS)
    assert {r.name: (r.width, r.height) for r in tiny.renditions} == {
        "1440": (16, 9),
        "250": (16, 9),
    }
    assert all(r.content_type == "image/jpeg" for r in tiny.renditions)


def test_portrait_long_side() -> None:
    assert rendition_size(800, 1600, 1440) == (720, 1440)
    assert rendition_size(800, 1600, 250) == (125, 250)
    assert rendition_size(3000, 1, 250) == (250, 1)
    assert rendition_size(100, 50, 250) == (100, 50)


def test_custom_sizes_and_quality() -> None:
    settings = MediaSettings(image_sizes=(64, 32, 8), jpeg_quality=50)
    result = process_image(_save(_halves((128, 96)), "WEBP"), settings)
    assert [(r.name, r.width, r.height) for r in result.renditions] == [
        ("64", 64, 48),
        ("32", 32, 24),
        ("8", 8, 6),
    ]


def test_alpha_gives_webp_opaque_rgba_gives_jpeg() -> None:
    transparent = Image.new("RGBA", (60, 40), (255, 0, 0, 0))
    transparent.paste((0, 0, 255, 255), (10, 10, 50, 30))
    result = process_image(_save(transparent, "PNG"), SETTINGS)
    assert result.has_alpha
    for rendition in result.renditions:
        assert rendition.content_type == "image/webp"
        out = _decoded(rendition.data)
        assert out.format == "WEBP"
        assert out.mode == "RGBA"
        assert out.getchannel("A").getextrema()[0] < 50
    opaque = Image.new("RGBA", (60, 40), (0, 0, 255, 255))
    result = process_image(_save(opaque, "PNG"), SETTINGS)
    assert not result.has_alpha
    assert {r.content_type for r in result.renditions} == {"image/jpeg"}
    assert all(_decoded(r.data).mode == "RGB" for r in result.renditions)


def test_palette_png_with_transparency_gives_webp() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (5, 5, 15, 15))
    result = process_image(_save(image, "PNG", transparency=0), SETTINGS)
    assert {r.content_type for r in result.renditions} == {"image/webp"}


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (30, 20), 128),
        Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
        Image.new("LA", (30, 20), (100, 255)),
    ],
    ids=["grey", "cmyk", "grey-opaque-alpha"],
)
def test_other_modes_give_rgb_jpeg(image: Image.Image) -> None:
    fmt = "JPEG" if image.mode in ("L", "CMYK") else "PNG"
    result = process_image(_save(image, fmt), SETTINGS)
    for rendition in result.renditions:
        assert rendition.content_type == "image/jpeg"
        assert _decoded(rendition.data).mode == "RGB"


def test_sixteen_bit_grey_png() -> None:
    array = np.linspace(0, 65535, 40 * 30, dtype=np.uint16).reshape(30, 40)
    image = Image.fromarray(array)
    result = process_image(_save(image, "PNG"), SETTINGS)
    out = _decoded(result.renditions[0].data).convert("L")
    low, high = out.getextrema()
    assert low < 30 and high > 220  # scaled, not clipped to white


# --- thumbhash ----------------------------------------------------------------------------------


def test_thumbhash_present_and_decodes() -> None:
    result = process_image(_save(_halves((400, 200)), "JPEG"), SETTINGS)
    assert 5 <= len(result.thumbhash) <= 25
    width, height, rgba = thumbhash_to_rgba(result.thumbhash)
    assert width > height and len(rgba) == width * height * 4
    assert thumbhash_to_approximate_aspect_ratio(result.thumbhash) == pytest.approx(2.0, rel=0.2)
    pixels = np.frombuffer(rgba, dtype=np.uint8).reshape(height, width, 4)
    left, right = (
        pixels[:, : width // 4, :3].mean(axis=(0, 1)),
        pixels[:, -width // 4 :, :3].mean(axis=(0, 1)),
    )
    assert left[0] > left[2] and right[2] > right[0]  # red left, blue right


# --- bad input ----------------------------------------------------------------------------------


def test_truncated_jpeg_fails_with_reason() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    data = _save(noise, "JPEG", quality=90)
    with pytest.raises(MediaProcessingError) as caught:
        process_image(data[: len(data) // 2], SETTINGS)
    assert caught.value.reason.startswith("truncated or corrupt image")
    assert str(caught.value) == caught.value.reason


def test_garbage_fails_with_reason() -> None:
    with pytest.raises(MediaProcessingError, match="unreadable image"):
        process_image(b"\x00" * 100, SETTINGS)


def test_refused_format_not_decoded() -> None:
    gif = _save(Image.new("P", (10, 10)), "GIF")
    with pytest.raises(MediaProcessingError, match="unreadable image"):
        process_image(gif, SETTINGS)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(100_000, 100_000), (8000, 8000), (12_001, 10)])
def test_decompression_bomb_guard(size: tuple[int, int]) -> None:
    with pytest.raises(MediaProcessingError, match="decompression bomb"):
        process_image(_png_claiming(*size), SETTINGS)


# --- HEIC and storing ---------------------------------------------------------------------------


def test_heic_roundtrip() -> None:
    if not heic_supported():
        pytest.skip("pillow_heif is not importable")
    import pillow_heif

    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build cannot encode HEIF")
    data = _save(_halves((64, 32)), "HEIF", quality=90)
    result = process_image(data, SETTINGS)
    assert (result.width, result.height) == (64, 32)
    assert result.renditions[0].content_type == "image/jpeg"
    out = _decoded(result.renditions[0].data).convert("RGB")
    assert out.size == (64, 32)
    assert _close(out.getpixel((5, 16)), RED, tol=60)
    assert _close(out.getpixel((58, 16)), BLUE, tol=60)
