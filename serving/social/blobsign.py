"""Signed, expiring blob URLs: the only way to read a stored blob over HTTP.

Blob keys are content hashes, so anyone who once learned a URL could fetch the file forever,
including the media of a followers-only story after a block or after the story expired. Every
URL the API hands out therefore carries an expiry and an HMAC over ``key`` and expiry:
``/v1/blobs/<key>?exp=<unix seconds>&sig=<base64url HMAC-SHA256, 16 bytes>``. The blob route
serves a blob only for an unexpired, correctly signed URL (:meth:`BlobSigner.check`), so a URL
is only as good as the read that produced it (which applied the visibility rules) and for at
most ``media.url_ttl_s`` seconds.

Expiries are rounded up to a window of ``url_ttl_s / 2`` seconds, so the same blob gets the same
URL for a while and browser and CDN caches still hit; a URL stays valid for between half and
all of ``url_ttl_s``.

The secret is ``media.url_secret`` when set (every API process of a deployment must share it),
else a random key kept in ``{data_dir}/blob-url.key`` (created on first use, mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import secrets
from pathlib import Path

from serving.social.clock import Clock
from serving.social.domain import Forbidden

__all__ = ["BLOB_PATH", "BlobSigner", "load_or_create_secret"]

BLOB_PATH = "/v1/blobs/"
_SIG_BYTES = 16


def load_or_create_secret(path: str | Path) -> bytes:
    """The secret stored at ``path``; a new random one is written there (0600, atomically:
    concurrent first callers agree on one) when the file does not exist."""
    file = Path(path)
    try:
        return bytes.fromhex(file.read_text().strip())
    except FileNotFoundError:
        pass
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(secrets.token_hex(32))
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, file)  # fails if another process won the race: then use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(file.read_text().strip())


class BlobSigner:
    """Makes and checks the signed URLs of blobs.

    >>> from serving.social.clock import ManualClock
    >>> signer = BlobSigner(b"k" * 32, ttl_s=3600, clock=ManualClock(1_000_000.0))
    >>> url = signer.url("ab" * 32)
    >>> url.startswith("/v1/blobs/" + "ab" * 32 + "?exp=")
    True
    """

    def __init__(self, secret: bytes, ttl_s: float, clock: Clock) -> None:
        if len(secret) < 16:
            raise ValueError("blob URL secret must have at least 16 bytes")
        if ttl_s < 2:
            raise ValueError(f"media.url_ttl_s must be >= 2, got {ttl_s!r}")
        self._secret = bytes(secret)
        self.ttl_s = float(ttl_s)
        self._window = max(1, int(ttl_s // 2))
        self._clock = clock

    def _signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{key}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:_SIG_BYTES]).decode().rstrip("=")

    def expiry(self) -> int:
        """The expiry of URLs made now: the end of the window after the current one."""
        return (math.floor(self._clock.now() / self._window) + 2) * self._window

    def url(self, key: str) -> str:
        """The signed URL of blob ``key``, valid until :meth:`expiry`."""
        expires = self.expiry()
        return f"{BLOB_PATH}{key}?exp={expires}&sig={self._signature(key, expires)}"

    def check(self, key: str, expires: int | None, signature: str | None) -> float:
        """Seconds the URL stays valid; 403 (field ``sig``) when the expiry or the signature is
        missing or wrong, or the URL expired."""
        if expires is None or not signature:
            raise Forbidden("blob URLs must be signed (exp and sig)", field="sig")
        expected = self._signature(key, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("blob URL signature is invalid", field="sig")
        left = int(expires) - self._clock.now()
        if left <= 0:
            raise Forbidden("blob URL expired; read the item again for a fresh URL", field="sig")
        return left
