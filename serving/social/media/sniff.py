"""Upload sniffing: what a file really is, decided from its bytes, before anything decodes it.

:func:`inspect_upload` identifies an upload by its magic bytes (never by the content type the
client declared, which only has to agree), checks it against the allow-lists and the byte
limits, and for images reads the dimensions from the header alone (Pillow opens lazily), so a
decompression bomb (a tiny file that claims 100000x100000 pixels) is refused before a single
pixel is decoded. Every error names the ``file`` field and says what is wrong.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from serving.social.domain import BadRequest, PayloadTooLarge, UnsupportedMedia

if TYPE_CHECKING:
    from serving.social.settings import MediaSettings

__all__ = [
    "ALLOWED_IMAGE_FORMATS",
    "ALLOWED_VIDEO_FORMATS",
    "CONTENT_TYPES",
    "PILLOW_FORMATS",
    "UploadInfo",
    "detect_format",
    "heic_supported",
    "inspect_upload",
]

ALLOWED_IMAGE_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "heic")
"""Image formats accepted for upload (``heic`` only where :func:`heic_supported`)."""

ALLOWED_VIDEO_FORMATS: tuple[str, ...] = ("mp4", "webm", "quicktime")
"""Video containers accepted for upload (the codecs inside are checked by ffprobe later)."""

CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "heic": "image/heic",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "quicktime": "video/quicktime",
}
"""The canonical MIME type of each allowed format."""

PILLOW_FORMATS: dict[str, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "heic": "HEIF"}
"""Pillow's name of each allowed image format (to restrict :func:`PIL.Image.open`)."""

MIN_BYTES = 12
"""Fewer bytes than this cannot be identified (the longest fixed signature checked is 12)."""

# Declared content types that mean "the client did not say".
_NO_DECLARATION = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}

# Declared content types accepted for each format, beyond CONTENT_TYPES itself. MP4 and
# QuickTime are the same ISO base media file family and clients label them interchangeably
# (an iPhone .mov is often sent as video/mp4), so each accepts the other's types.
_ALIASES: dict[str, frozenset[str]] = {
    "jpeg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "png": frozenset({"image/png", "image/x-png"}),
    "webp": frozenset({"image/webp"}),
    "heic": frozenset({"image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"}),
    "mp4": frozenset({"video/mp4", "video/x-m4v", "video/quicktime"}),
    "quicktime": frozenset({"video/quicktime", "video/mp4", "video/x-m4v"}),
    "webm": frozenset({"video/webm"}),
}

# ISO base media file format ("ftyp") brands.
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_GENERIC_BRANDS = {b"mif1", b"msf1", b"mif2"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


@dataclass(frozen=True)
class UploadInfo:
    """What an upload is.

    ``format`` is one of :data:`ALLOWED_IMAGE_FORMATS` or :data:`ALLOWED_VIDEO_FORMATS`;
    ``content_type`` is the canonical MIME type of that format (from the bytes, not the
    client's declaration). ``width``/``height`` are the stored pixel dimensions read from an
    image's header, before any EXIF orientation; ``None`` for videos (ffprobe reads those).
    """

    kind: Literal["image", "video"]
    format: str
    content_type: str
    size_bytes: int
    width: int | None = None
    height: int | None = None


@functools.cache
def heic_supported() -> bool:
    """Whether HEIC/HEIF images can be read: ``pillow_heif`` imports (its Pillow opener is
    registered by the first call)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    try:
        pillow_heif.register_heif_opener()
    except Exception:  # a broken install means: not supported
        return False
    return True


def allowed_formats() -> tuple[str, ...]:
    """Every format accepted right now (HEIC only where :func:`heic_supported`)."""
    images = tuple(f for f in ALLOWED_IMAGE_FORMATS if f != "heic" or heic_supported())
    return images + ALLOWED_VIDEO_FORMATS


def _iso_bmff_format(data: bytes) -> str:
    """The format of an ISO base media file (``ftyp`` box at offset 4) from its brands."""
    size = int.from_bytes(data[0:4], "big")
    end = min(len(data), size if 16 <= size <= 4096 else 64)
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    if major in _HEIC_BRANDS:
        return "heic"
    if major in _AVIF_BRANDS:
        return "avif"
    if major == b"qt  ":
        return "quicktime"
    if major in _AUDIO_BRANDS:
        return "m4a"
    if major == b"crx ":
        return "cr3"
    if major in _HEIF_GENERIC_BRANDS:
        if brands & _HEIC_BRANDS:
            return "heic"
        if brands & _AVIF_BRANDS:
            return "avif"
        return "heif"
    if major[:3] in (b"3gp", b"3g2"):
        return "3gp"
    return "mp4"


def _matroska_format(data: bytes) -> str:
    """``webm`` or ``matroska`` from the EBML header's DocType."""
    return "webm" if b"webm" in data[:64] else "matroska"


def detect_format(data: bytes) -> str:
    """The format the bytes are in, by magic number: one of the allowed formats, the name of a
    known but refused format (``gif``, ``bmp``, ``tiff``, ``svg``, ``pdf``, ``avif``, ...), or
    ``unknown``."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _iso_bmff_format(data)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _matroska_format(data)
    if head[4:8] in _QUICKTIME_ATOMS:
        return "quicktime"
    # refused formats, named so the error message can say what was sent
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head[:4] == b"RIFF":
        return {b"AVI ": "avi", b"WAVE": "wav"}.get(head[8:12], "riff")
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "jpeg-xl"
    if head.startswith(b"8BPS"):
        return "psd"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    if head.startswith(b"FLV"):
        return "flv"
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in data[:4096].lower():
        return "svg"
    if text.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "unknown"


def _normalize_declared(declared: str | None) -> str:
    """The bare, lowercased MIME type (parameters dropped); ``""`` for no declaration."""
    if declared is None:
        return ""
    mime = declared.split(";", 1)[0].strip().lower()
    return "" if mime in _NO_DECLARATION else mime


def _unsupported(detected: str) -> UnsupportedMedia:
    what = "an unrecognized file type" if detected == "unknown" else f"{detected}"
    if detected == "heic":
        what = "heic (HEIC support is not installed on this server)"
    return UnsupportedMedia(
        f"unsupported media: the file is {what}; allowed: {', '.join(allowed_formats())}",
        field="file",
    )


def _image_dimensions(data: bytes, fmt: str, settings: MediaSettings) -> tuple[int, int]:
    """Width and height from the image header (no pixel is decoded), checked against the
    pixel and side limits."""
    from PIL import Image, UnidentifiedImageError

    try:
        # Image.open reads the header only; decoding happens on load(), which we never call.
        with Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[fmt]]) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(
            f"image refused as a decompression bomb (too many pixels): {error}", field="file"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadRequest(
            f"unreadable {fmt} image header (truncated or corrupt): {error}", field="file"
        ) from None
    if width < 1 or height < 1:
        raise BadRequest(f"{fmt} image header claims an empty {width}x{height} image", field="file")
    if width * height > settings.max_image_pixels:
        raise PayloadTooLarge(
            f"image has too many pixels (possible decompression bomb): {width}x{height} = "
            f"{width * height} pixels; the limit is {settings.max_image_pixels}",
            field="file",
        )
    if max(width, height) > settings.max_image_side:
        raise PayloadTooLarge(
            f"image is too large: {width}x{height}; no side may exceed "
            f"{settings.max_image_side} pixels",
            field="file",
        )
    return width, height


def inspect_upload(
    data: bytes,
    declared_content_type: str | None,
    settings: MediaSettings,
    *,
    size: int | None = None,
) -> UploadInfo:
    """Identifies and vets an upload: ``data`` is the whole file, or (a video streamed to
    disk) its first bytes with ``size`` the whole file's length.

    Raises (each with ``field="file"``):
        BadRequest: empty or too short to identify; the declared content type disagrees with
            the bytes; an image header is unreadable.
        UnsupportedMedia: the format is not allowed (named, with the allowed list).
        PayloadTooLarge: over the byte limit of its kind, or an image over the pixel or side
            limits (checked from the header, before decoding).
    """
    size = len(data) if size is None else int(size)
    if size == 0:
        raise BadRequest("the file is empty (0 bytes)", field="file")
    if size < MIN_BYTES:
        raise BadRequest(
            f"the file is too short to be an image or video ({size} bytes)", field="file"
        )
    detected = detect_format(data)
    if detected not in allowed_formats():
        raise _unsupported(detected)
    kind: Literal["image", "video"] = "image" if detected in ALLOWED_IMAGE_FORMATS else "video"
    content_type = CONTENT_TYPES[detected]

    declared = _normalize_declared(declared_content_type)
    if declared and declared not in _ALIASES[detected]:
        raise BadRequest(
            f"declared {declared} but the file is {content_type} ({detected})", field="file"
        )

    limit = settings.max_image_bytes if kind == "image" else settings.max_video_bytes
    if size > limit:
        raise PayloadTooLarge(
            f"{kind} is too large: {size} bytes; the limit is {limit} bytes", field="file"
        )

    if kind == "video":
        return UploadInfo(kind, detected, content_type, size)
    width, height = _image_dimensions(data, detected, settings)
    return UploadInfo(kind, detected, content_type, size, width, height)
