"""Image processing: one upload in, web renditions and a ThumbHash out.

:func:`process_image` decodes an upload (JPEG, PNG, WebP, HEIC) that
:func:`~serving.social.media.sniff.inspect_upload` accepted, and

1. checks the pixel and side limits again from the header (Pillow's own decompression-bomb
   guard is mapped to :class:`MediaProcessingError` as well), then decodes it fully, so a
   truncated or corrupt file fails here rather than half-rendered;
2. applies the EXIF orientation to the pixels (a malformed EXIF block is ignored: no rotation);
3. writes one rendition per ``settings.image_sizes`` long side, never upscaled (a smaller image
   keeps its size, and every rendition still exists): JPEG (RGB, ``settings.jpeg_quality``)
   for opaque images, lossy WebP where the image has real transparency;
4. keeps the ICC colour profile (an RGB one; other colour spaces are converted to sRGB) and
   strips every other piece of metadata, EXIF (camera, GPS) and XMP included;
5. computes the ThumbHash placeholder from a version at most 100 pixels on a side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from serving.social.media.errors import MediaProcessingError
from serving.social.media.sniff import PILLOW_FORMATS, heic_supported
from serving.social.media.thumbhash import MAX_SIDE as THUMBHASH_MAX_SIDE
from serving.social.media.thumbhash import image_to_thumbhash

if TYPE_CHECKING:
    from serving.social.settings import MediaSettings

__all__ = ["ProcessedImage", "RenditionFile", "process_image", "rendition_size"]

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


@dataclass(frozen=True)
class RenditionFile:
    """One encoded rendition held in memory (images), ready to be stored as a blob."""

    name: str
    data: bytes = field(repr=False)
    content_type: str
    width: int
    height: int

    @property
    def size_bytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ProcessedImage:
    """The result of :func:`process_image`: the oriented size, the ThumbHash bytes and one
    rendition per configured size (largest first, as in ``settings.image_sizes``)."""

    width: int
    height: int
    thumbhash: bytes
    renditions: list[RenditionFile]
    has_alpha: bool = False


def rendition_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the long side is at most ``long_side``, aspect kept,
    never upscaled, each side at least 1."""
    current = max(width, height)
    if current <= long_side:
        return width, height
    scale = long_side / current
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(data: bytes) -> Image.Image:
    formats = [fmt for name, fmt in PILLOW_FORMATS.items() if name != "heic" or heic_supported()]
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as error:
        raise MediaProcessingError(f"decompression bomb refused: {error}") from None
    except _DECODE_ERRORS as error:
        raise MediaProcessingError(f"unreadable image: {error}") from None


def _check_limits(image: Image.Image, settings: MediaSettings) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise MediaProcessingError(f"empty image ({width}x{height})")
    if width * height > settings.max_image_pixels or max(width, height) > settings.max_image_side:
        raise MediaProcessingError(
            f"image too large (decompression bomb guard): {width}x{height}; limits are "
            f"{settings.max_image_pixels} pixels and {settings.max_image_side} per side"
        )


def _oriented(image: Image.Image) -> Image.Image:
    """The image with its EXIF orientation applied; unchanged when the EXIF is malformed."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not fail the upload
        return image.copy()
    return image.copy() if transposed is None else transposed


def _has_alpha(image: Image.Image) -> bool:
    """Whether the image has transparency that is actually used (some alpha below 255)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        alpha = image.convert("RGBA").getchannel("A")
        low, _ = alpha.getextrema()
        return low < 255
    return False


def _icc_colour_space(icc: bytes) -> bytes:
    """The data colour space signature of an ICC profile (header bytes 16-20), e.g. ``RGB ``."""
    return icc[16:20] if len(icc) >= 20 else b""


def _to_output_mode(image: Image.Image, alpha: bool) -> tuple[Image.Image, bytes | None]:
    """The image in ``RGB`` (or ``RGBA`` with ``alpha``) and the ICC profile to embed.

    An RGB profile is kept as is. A profile of another colour space (CMYK, grey) cannot describe
    RGB output, so the pixels are converted to sRGB through it (with ``ImageCms``) and no profile
    is embedded (sRGB is the default); where that conversion fails, the profile is dropped.
    """
    mode = "RGBA" if alpha else "RGB"
    icc = image.info.get("icc_profile") or None
    if icc and _icc_colour_space(icc) != b"RGB ":
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            base = image.convert("RGB") if image.mode not in ("RGB", "CMYK", "L") else image
            converted = ImageCms.profileToProfile(base, source, srgb, outputMode="RGB")
            if converted is not None:
                if alpha:
                    converted.putalpha(image.convert("RGBA").getchannel("A"))
                return converted, None
        except Exception:  # a broken profile: convert without it
            pass
        icc = None
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I") and not alpha:
        # 16-bit greyscale (PNG): scale to 8 bits rather than clip
        image = image.point(lambda value: value / 256).convert("L")
    return (image if image.mode == mode else image.convert(mode)), icc


def _encode(image: Image.Image, alpha: bool, icc: bytes | None, quality: int) -> tuple[bytes, str]:
    """JPEG or lossy WebP bytes with no metadata but the ICC profile."""
    # a fresh image object: nothing from the source's info dict (exif, xmp, comments) can leak
    clean = image.copy()
    clean.info = {}
    out = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if alpha:
        clean.save(out, "WEBP", quality=quality, method=4, exif=b"", xmp=b"", **extra)
        return out.getvalue(), "image/webp"
    clean.save(out, "JPEG", quality=quality, optimize=True, progressive=True, exif=b"", **extra)
    return out.getvalue(), "image/jpeg"


def process_image(data: bytes, settings: MediaSettings) -> ProcessedImage:
    """Decodes an uploaded image and produces its renditions and ThumbHash.

    Raises:
        MediaProcessingError: unreadable, over the pixel limits (decompression bomb), or
            truncated/corrupt (``reason`` starts with ``truncated or corrupt image``).
    """
    with _open(data) as source:
        _check_limits(source, settings)
        try:
            source.seek(0)  # first frame of animated or multi-image files
            source.load()
        except Image.DecompressionBombError as error:
            raise MediaProcessingError(f"decompression bomb refused: {error}") from None
        except _DECODE_ERRORS as error:
            raise MediaProcessingError(f"truncated or corrupt image: {error}") from None
        oriented = _oriented(source)
        alpha = _has_alpha(oriented)
        image, icc = _to_output_mode(oriented, alpha)

    renditions: list[RenditionFile] = []
    previous = image
    for long_side in sorted(set(settings.image_sizes), reverse=True):
        size = rendition_size(image.width, image.height, long_side)
        # resize from the previous (larger) rendition: cheaper, and still far above the target
        resized = (
            previous if previous.size == size else previous.resize(size, Image.Resampling.LANCZOS)
        )
        encoded, content_type = _encode(resized, alpha, icc, settings.jpeg_quality)
        renditions.append(
            RenditionFile(str(long_side), encoded, content_type, resized.width, resized.height)
        )
        previous = resized
    order = {str(side): index for index, side in enumerate(settings.image_sizes)}
    renditions.sort(key=lambda rendition: order[rendition.name])

    small = previous.copy()
    small.thumbnail((THUMBHASH_MAX_SIDE, THUMBHASH_MAX_SIDE), Image.Resampling.BOX)
    thumbhash = image_to_thumbhash(small)
    return ProcessedImage(image.width, image.height, thumbhash, renditions, alpha)
