"""``cos`` as JavaScript engines compute it (fdlibm), for bit-exact parity with JS references.

V8 (Node.js, Chrome) computes ``Math.cos`` with a port of Sun's fdlibm, while CPython's
:func:`math.cos` uses the platform libm (glibc), and the two differ in the last bit for some
arguments. ThumbHash quantizes sums of cosines, so a one-ulp difference can flip a 4-bit value;
this module reproduces fdlibm's ``cos`` for the moderate arguments ThumbHash uses. It is a
re-implementation of the published fdlibm algorithm (argument reduction by pi/2 in three
pieces, then minimax polynomials on [-pi/4, pi/4]).
"""

from __future__ import annotations

import math
import struct

__all__ = ["fdlibm_cos"]

# Polynomial coefficients of fdlibm's k_cos.c and k_sin.c.
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10

# pi/2 split into pieces (e_rem_pio2.c).
_INVPIO2 = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e00
_PIO2_1T = 6.07710050650619224932e-11
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_2T = 2.02226624879595063154e-21
_PIO2_3 = 2.02226624871116645580e-21
_PIO2_3T = 8.47842766036889956997e-32

_MAX_ARGUMENT = 2.0**19 * math.pi / 2  # fdlibm's "medium" reduction range


def _high_word(x: float) -> int:
    """The upper 32 bits of the IEEE-754 representation of ``x`` (sign included)."""
    return struct.unpack("<q", struct.pack("<d", x))[0] >> 32 & 0xFFFFFFFF


def _with_high_word(high: int) -> float:
    """The double whose upper 32 bits are ``high`` and lower 32 bits zero."""
    return struct.unpack("<d", struct.pack("<Q", (high & 0xFFFFFFFF) << 32))[0]


def _kernel_cos(x: float, y: float) -> float:
    ix = _high_word(x) & 0x7FFFFFFF
    if ix < 0x3E400000 and int(x) == 0:  # |x| < 2**-27
        return 1.0
    z = x * x
    r = z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    if ix < 0x3FD33333:  # |x| < 0.3
        return 1.0 - (0.5 * z - (z * r - x * y))
    qx = 0.28125 if ix > 0x3FE90000 else _with_high_word(ix - 0x00200000)
    hz = 0.5 * z - qx
    a = 1.0 - qx
    return a - (hz - (z * r - x * y))


def _kernel_sin(x: float, y: float) -> float:
    """fdlibm's ``__kernel_sin(x, y, iy=1)``: sin(x + y) for a reduced argument."""
    ix = _high_word(x) & 0x7FFFFFFF
    if ix < 0x3E400000 and int(x) == 0:
        return x
    z = x * x
    v = z * x
    r = _S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))
    return x - ((z * (0.5 * y - v * r) - y) - v * _S1)


def _rem_pio2(t: float) -> tuple[int, float, float]:
    """Reduce ``t`` (>= pi/4, <= 2**19 * pi/2) to ``n`` and ``y0 + y1`` = t - n * pi/2."""
    ix = _high_word(t) & 0x7FFFFFFF
    if ix < 0x4002D97C:  # |t| < 3pi/4: n = 1
        z = t - _PIO2_1
        if ix != 0x3FF921FB:
            y0 = z - _PIO2_1T
            return 1, y0, (z - y0) - _PIO2_1T
        z -= _PIO2_2
        y0 = z - _PIO2_2T
        return 1, y0, (z - y0) - _PIO2_2T
    n = int(t * _INVPIO2 + 0.5)
    fn = float(n)
    r = t - fn * _PIO2_1
    w = fn * _PIO2_1T
    # fdlibm skips the checks below through a table when no cancellation is possible; doing
    # them always gives the same result, as they only refine when cancellation happened.
    j = ix >> 20
    y0 = r - w
    if j - ((_high_word(y0) >> 20) & 0x7FF) > 16:  # second iteration, good to 118 bits
        u = r
        w = fn * _PIO2_2
        r = u - w
        w = fn * _PIO2_2T - ((u - r) - w)
        y0 = r - w
        if j - ((_high_word(y0) >> 20) & 0x7FF) > 49:  # third iteration, 151 bits
            u = r
            w = fn * _PIO2_3
            r = u - w
            w = fn * _PIO2_3T - ((u - r) - w)
            y0 = r - w
    return n, y0, (r - y0) - w


def fdlibm_cos(x: float) -> float:
    """``cos(x)`` bit-identical to fdlibm (and so to V8's ``Math.cos``) for |x| <= 2**19 * pi/2.

    Raises:
        ValueError: ``x`` is not finite or is outside the supported range.
    """
    t = abs(float(x))
    if not t <= _MAX_ARGUMENT:
        raise ValueError(f"fdlibm_cos supports |x| <= {_MAX_ARGUMENT}, got {x}")
    if _high_word(t) <= 0x3FE921FB:  # |x| <= pi/4: no reduction
        return _kernel_cos(t, 0.0)
    n, y0, y1 = _rem_pio2(t)
    quadrant = n & 3
    if quadrant == 0:
        return _kernel_cos(y0, y1)
    if quadrant == 1:
        return -_kernel_sin(y0, y1)
    if quadrant == 2:
        return -_kernel_cos(y0, y1)
    return _kernel_sin(y0, y1)
