"""64-bit FNV-1a of strings' UTF-8 bytes, vectorized with NumPy over the strings.

The training pipeline hashes a categorical value ``v`` into ``2 + fnv1a64(utf8(v)) % buckets``
(``recsys.data.preprocess``); this is the same function for request-time values, written for
Python strings: the bytes of all strings go into one ``N x L`` matrix (``L`` the longest string)
and the hash advances one byte column at a time for the strings that are that long, so the cost
is ``L`` NumPy steps, not a Python step per byte.

Example::

    fnv1a64(["a", ""])   # array([0xaf63dc4c8601ec8c, 0xcbf29ce484222325], dtype=uint64)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["FNV_OFFSET_BASIS", "FNV_PRIME", "fnv1a64", "fnv1a64_bytes"]

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64_bytes(blobs: Sequence[bytes]) -> np.ndarray:
    """FNV-1a 64 of each byte string; returns ``N`` uint64."""
    n = len(blobs)
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=n)
    h = np.full(n, FNV_OFFSET_BASIS, dtype=np.uint64)
    width = int(lengths.max()) if n else 0
    if width == 0:
        return h
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    owner = np.repeat(np.arange(n), lengths)
    matrix = np.zeros((n, width), dtype=np.uint64)
    matrix[owner, np.arange(data.size) - starts[owner]] = data
    prime = np.uint64(FNV_PRIME)
    for pos in range(width):
        active = lengths > pos
        if active.all():
            h = (h ^ matrix[:, pos]) * prime
        else:
            h[active] = (h[active] ^ matrix[active, pos]) * prime
    return h


def fnv1a64(values: Sequence[str]) -> np.ndarray:
    """FNV-1a 64 of each string's UTF-8 bytes; returns ``N`` uint64.

    Raises:
        UnicodeEncodeError: a string that is not encodable as UTF-8 (a lone surrogate).
    """
    return fnv1a64_bytes([v.encode("utf-8") for v in values])
