"""ThumbHash: a very compact placeholder for an image, with its aspect ratio and alpha.

Our own implementation of Evan Wallace's ThumbHash algorithm (https://evanw.github.io/thumbhash/,
reference implementation MIT-licensed). The image is converted to an LPQA colour space
(luminance, yellow-blue, red-green, alpha), each channel is reduced to a few low-frequency DCT
coefficients, and those are quantized into a byte string of 20 to 25 bytes:

- bytes 0-2 (``header24``): L DC (6 bits), P DC (6), Q DC (6), L AC scale (5), has-alpha (1);
- bytes 3-4 (``header16``): the L coefficient count along the short side (3 bits), P AC scale
  (6), Q AC scale (6), is-landscape (1);
- byte 5, only with alpha: A DC (4 bits) and A AC scale (4 bits);
- then the AC coefficients of L, P, Q (and A), 4 bits each, low nibble first.

Exact parity with the reference's integer quantization matters more than speed here, so the
floating-point operations mirror the reference's: the same association order, sums accumulated
sequentially (``np.add.accumulate``, not numpy's pairwise ``sum``), cosines computed as V8's
``Math.cos`` does (fdlibm, see ``_fdlibm``; glibc's ``math.cos`` differs in the last bit for
some arguments), and JavaScript's ``Math.round`` (ties toward +infinity) instead of Python's
banker's rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serving.social.media._fdlibm import fdlibm_cos

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "MAX_SIDE",
    "image_to_thumbhash",
    "rgba_to_thumbhash",
    "thumbhash_to_approximate_aspect_ratio",
    "thumbhash_to_average_rgba",
    "thumbhash_to_rgba",
]

MAX_SIDE = 100
"""The largest width or height the encoder accepts (the reference's limit)."""

_DECODED_LONG_SIDE = 32


def _js_round(x: float) -> int:
    """Round like JavaScript's ``Math.round``: to nearest, ties toward +infinity."""
    floor = math.floor(x)
    return floor + 1 if x - floor >= 0.5 else floor


def _seq_sum(values: np.ndarray) -> float:
    """Sum ``values`` (row-major) left to right, as a plain ``+=`` loop would."""
    flat = np.ravel(values)
    if flat.size == 0:
        return 0.0
    return float(np.add.accumulate(flat)[-1])


def _positions(nx: int, ny: int) -> list[tuple[int, int]]:
    """The (cx, cy) coefficients kept for an ``nx`` x ``ny`` channel, DC first, in hash order."""
    return [(cx, cy) for cy in range(ny) for cx in range(nx) if cx * ny < nx * (ny - cy)]


def _as_pixels(width: int, height: int, rgba: bytes | bytearray | memoryview | np.ndarray):
    """Validate the encoder's input and return the pixels as a float64 array of shape (N, 4)."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1x1, got {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ValueError(
            f"a {width}x{height} image doesn't fit in {MAX_SIDE}x{MAX_SIDE}: downsize it first "
            "(image_to_thumbhash does)"
        )
    if isinstance(rgba, bytes | bytearray | memoryview):
        data = np.frombuffer(bytes(rgba), dtype=np.uint8)
    elif isinstance(rgba, np.ndarray):
        if rgba.dtype != np.uint8:
            raise TypeError(f"rgba array must have dtype uint8, got {rgba.dtype}")
        data = rgba.reshape(-1)
    else:
        raise TypeError(f"rgba must be bytes or a numpy uint8 array, got {type(rgba).__name__}")
    expected = width * height * 4
    if data.size != expected:
        raise ValueError(
            f"rgba has {data.size} values, but a {width}x{height} RGBA image needs {expected}"
        )
    return data.reshape(width * height, 4).astype(np.float64)


def rgba_to_thumbhash(
    width: int, height: int, rgba: bytes | bytearray | memoryview | np.ndarray
) -> bytes:
    """Encode an RGBA image (not premultiplied, row by row) into a ThumbHash.

    Args:
        width: image width in pixels, 1 to 100.
        height: image height in pixels, 1 to 100.
        rgba: ``width * height * 4`` bytes, or a uint8 numpy array of that many values (any
            shape, e.g. ``(height, width, 4)``).

    Returns:
        The ThumbHash bytes.

    Raises:
        ValueError: the size is out of range or ``rgba`` has the wrong length.
        TypeError: arguments of the wrong type.
    """
    pixels = _as_pixels(width, height, rgba)
    w, h = int(width), int(height)
    alpha = pixels[:, 3] / 255
    weight = alpha / 255  # the reference's ``alpha / 255 * value``

    # The average colour, weighted by alpha.
    avg_a = _seq_sum(alpha)
    avg_r = _seq_sum(weight * pixels[:, 0])
    avg_g = _seq_sum(weight * pixels[:, 1])
    avg_b = _seq_sum(weight * pixels[:, 2])
    if avg_a:
        avg_r, avg_g, avg_b = avg_r / avg_a, avg_g / avg_a, avg_b / avg_a

    has_alpha = avg_a < w * h
    l_limit = 5 if has_alpha else 7  # fewer luminance coefficients when alpha needs bytes
    lx = max(1, _js_round(l_limit * w / max(w, h)))
    ly = max(1, _js_round(l_limit * h / max(w, h)))

    # RGBA -> LPQA, composited over the average colour.
    r = avg_r * (1 - alpha) + weight * pixels[:, 0]
    g = avg_g * (1 - alpha) + weight * pixels[:, 1]
    b = avg_b * (1 - alpha) + weight * pixels[:, 2]
    channel_l = ((r + g + b) / 3).reshape(h, w)
    channel_p = ((r + g) / 2 - b).reshape(h, w)
    channel_q = (r - g).reshape(h, w)
    channel_a = alpha.reshape(h, w)

    cos_x: dict[int, np.ndarray] = {}
    cos_y: dict[int, np.ndarray] = {}

    def encode_channel(channel: np.ndarray, nx: int, ny: int) -> tuple[float, list[float], float]:
        dc, ac, scale = 0.0, [], 0.0
        for cx, cy in _positions(nx, ny):
            if cx not in cos_x:
                cos_x[cx] = np.array([fdlibm_cos(math.pi / w * cx * (x + 0.5)) for x in range(w)])
            if cy not in cos_y:
                cos_y[cy] = np.array([fdlibm_cos(math.pi / h * cy * (y + 0.5)) for y in range(h)])
            f = _seq_sum(channel * cos_x[cx][None, :] * cos_y[cy][:, None]) / (w * h)
            if cx or cy:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
        if scale:
            ac = [0.5 + 0.5 / scale * f for f in ac]
        return dc, ac, scale

    l_dc, l_ac, l_scale = encode_channel(channel_l, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = encode_channel(channel_p, 3, 3)
    q_dc, q_ac, q_scale = encode_channel(channel_q, 3, 3)

    is_landscape = w > h
    header24 = (
        _js_round(63 * l_dc)
        | (_js_round(31.5 + 31.5 * p_dc) << 6)
        | (_js_round(31.5 + 31.5 * q_dc) << 12)
        | (_js_round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (
        (ly if is_landscape else lx)
        | (_js_round(63 * p_scale) << 3)
        | (_js_round(63 * q_scale) << 9)
        | (int(is_landscape) << 15)
    )
    out = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    factors = [*l_ac, *p_ac, *q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = encode_channel(channel_a, 5, 5)
        out.append(_js_round(15 * a_dc) | (_js_round(15 * a_scale) << 4))
        factors += a_ac

    nibbles = [_js_round(15 * f) for f in factors]
    if len(nibbles) % 2:
        nibbles.append(0)
    out += [low | (high << 4) for low, high in zip(nibbles[::2], nibbles[1::2])]
    return bytes(out)


@dataclass(frozen=True)
class _Header:
    """The decoded constants of a ThumbHash."""

    l_dc: float
    p_dc: float
    q_dc: float
    l_scale: float
    p_scale: float
    q_scale: float
    has_alpha: bool
    is_landscape: bool
    lx: int  # raw coefficient counts as stored (aspect ratio); the decoder uses max(3, .)
    ly: int
    a_dc: float
    a_scale: float


def _ac_count(nx: int, ny: int) -> int:
    return len(_positions(nx, ny)) - 1


def _parse(hash_: bytes | bytearray | memoryview) -> tuple[_Header, bytes]:
    """Validate a ThumbHash and read its constants; returns the header and the hash as bytes."""
    if not isinstance(hash_, bytes | bytearray | memoryview):
        raise TypeError(f"a ThumbHash must be bytes, got {type(hash_).__name__}")
    data = bytes(hash_)
    if len(data) < 5:
        raise ValueError(f"ThumbHash too short: {len(data)} bytes, the header alone needs 5")
    header24 = data[0] | (data[1] << 8) | (data[2] << 16)
    header16 = data[3] | (data[4] << 8)
    has_alpha = bool(header24 >> 23)
    is_landscape = bool(header16 >> 15)
    l_limit = 5 if has_alpha else 7
    short_side = header16 & 7
    if not 1 <= short_side <= l_limit:
        raise ValueError(
            f"malformed ThumbHash header: luminance count {short_side} on the short side must be "
            f"1..{l_limit} for a hash {'with' if has_alpha else 'without'} alpha"
        )
    lx, ly = (l_limit, short_side) if is_landscape else (short_side, l_limit)
    ac_start = 6 if has_alpha else 5
    if len(data) < ac_start:
        raise ValueError(f"ThumbHash too short: {len(data)} bytes, a hash with alpha needs 6+")
    n_ac = _ac_count(max(3, lx), max(3, ly)) + 2 * _ac_count(3, 3)
    if has_alpha:
        n_ac += _ac_count(5, 5)
    expected = ac_start + (n_ac + 1) // 2
    if len(data) != expected:
        problem = "too short" if len(data) < expected else "too long"
        raise ValueError(
            f"ThumbHash {problem}: {len(data)} bytes, but its header describes {expected}"
        )
    header = _Header(
        l_dc=(header24 & 63) / 63,
        p_dc=((header24 >> 6) & 63) / 31.5 - 1,
        q_dc=((header24 >> 12) & 63) / 31.5 - 1,
        l_scale=((header24 >> 18) & 31) / 31,
        p_scale=((header16 >> 3) & 63) / 63,
        q_scale=((header16 >> 9) & 63) / 63,
        has_alpha=has_alpha,
        is_landscape=is_landscape,
        lx=lx,
        ly=ly,
        a_dc=(data[5] & 15) / 15 if has_alpha else 1.0,
        a_scale=(data[5] >> 4) / 15 if has_alpha else 0.0,
    )
    return header, data


def thumbhash_to_approximate_aspect_ratio(hash_: bytes | bytearray | memoryview) -> float:
    """The approximate aspect ratio (width / height) of the image a ThumbHash was made from.

    Raises:
        ValueError: the hash is malformed.
    """
    header, _ = _parse(hash_)
    return header.lx / header.ly


def thumbhash_to_average_rgba(
    hash_: bytes | bytearray | memoryview,
) -> tuple[float, float, float, float]:
    """The average colour ``(r, g, b, a)`` of a ThumbHash, each in [0, 1], not premultiplied.

    Raises:
        ValueError: the hash is malformed.
    """
    header, _ = _parse(hash_)
    lum, p, q = header.l_dc, header.p_dc, header.q_dc
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    g = r - q
    return (max(0.0, min(1.0, r)), max(0.0, min(1.0, g)), max(0.0, min(1.0, b)), header.a_dc)


def thumbhash_to_rgba(hash_: bytes | bytearray | memoryview) -> tuple[int, int, bytes]:
    """Render a ThumbHash as a small RGBA image (long side 32 px, not premultiplied).

    Returns:
        ``(width, height, rgba)`` with ``rgba`` holding ``width * height * 4`` bytes, row by row.

    Raises:
        ValueError: the hash is malformed.
    """
    header, data = _parse(hash_)
    lx, ly = max(3, header.lx), max(3, header.ly)
    ac_start = 6 if header.has_alpha else 5
    nibbles = [(byte >> shift) & 15 for byte in data[ac_start:] for shift in (0, 4)]
    cursor = 0

    def decode_channel(nx: int, ny: int, scale: float) -> list[float]:
        nonlocal cursor
        count = _ac_count(nx, ny)
        ac = [(n / 7.5 - 1) * scale for n in nibbles[cursor : cursor + count]]
        cursor += count
        return ac

    # Saturation is boosted by 1.25x to make up for the quantization, as the reference does.
    l_ac = decode_channel(lx, ly, header.l_scale)
    p_ac = decode_channel(3, 3, header.p_scale * 1.25)
    q_ac = decode_channel(3, 3, header.q_scale * 1.25)
    a_ac = decode_channel(5, 5, header.a_scale) if header.has_alpha else []

    ratio = header.lx / header.ly
    w = _js_round(_DECODED_LONG_SIDE if ratio > 1 else _DECODED_LONG_SIDE * ratio)
    h = _js_round(_DECODED_LONG_SIDE / ratio if ratio > 1 else _DECODED_LONG_SIDE)
    n = max(lx, ly, 5 if header.has_alpha else 3)
    fx = [np.array([fdlibm_cos(math.pi / w * (x + 0.5) * cx) for x in range(w)]) for cx in range(n)]
    fy2 = [
        np.array([fdlibm_cos(math.pi / h * (y + 0.5) * cy) for y in range(h)])[:, None] * 2
        for cy in range(n)
    ]

    lum = np.full((h, w), header.l_dc)
    for coefficient, (cx, cy) in zip(l_ac, _positions(lx, ly)[1:]):
        lum = lum + (coefficient * fx[cx])[None, :] * fy2[cy]
    p = np.full((h, w), header.p_dc)
    q = np.full((h, w), header.q_dc)
    for p_c, q_c, (cx, cy) in zip(p_ac, q_ac, _positions(3, 3)[1:]):
        f = fx[cx][None, :] * fy2[cy]
        p = p + p_c * f
        q = q + q_c * f
    a = np.full((h, w), header.a_dc)
    for coefficient, (cx, cy) in zip(a_ac, _positions(5, 5)[1:]):
        a = a + (coefficient * fx[cx])[None, :] * fy2[cy]

    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    g = r - q
    # Uint8Array assignment in the reference truncates toward zero.
    rgba = np.stack([r, g, b, a], axis=-1)
    rgba = np.maximum(0.0, 255 * np.minimum(1.0, rgba)).astype(np.uint8)
    return w, h, rgba.tobytes()


def image_to_thumbhash(image: Image.Image) -> bytes:
    """Encode a Pillow image: convert it to RGBA and shrink it to fit 100x100 first.

    The aspect ratio is kept; images that already fit are not resized.

    Raises:
        TypeError: ``image`` is not a Pillow image.
        ValueError: the image is empty.
    """
    from PIL import Image as PILImage

    if not isinstance(image, PILImage.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image size must be at least 1x1, got {image.width}x{image.height}")
    rgba = image.convert("RGBA")
    long_side = max(rgba.width, rgba.height)
    if long_side > MAX_SIDE:
        scale = MAX_SIDE / long_side
        size = (
            min(MAX_SIDE, max(1, round(rgba.width * scale))),
            min(MAX_SIDE, max(1, round(rgba.height * scale))),
        )
        rgba = rgba.resize(size, PILImage.Resampling.BOX)
    return rgba_to_thumbhash(rgba.width, rgba.height, rgba.tobytes())
