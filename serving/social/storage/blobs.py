"""A local, content-addressed blob store: the embedded (and production) :class:`BlobStore`.

A blob's key is the SHA-256 hex digest of its bytes, stored at ``root/ab/cd/<key>`` where ``ab``
and ``cd`` are the key's first two byte pairs (so no folder grows past 65 536 entries). Writes
are atomic: the bytes go to a temporary file inside ``root``, are fsynced, and are moved
into place with :func:`os.replace`, so a reader never sees a half-written blob. A key that
already exists is not rewritten (equal key, equal content).

Keys are validated (exactly 64 lowercase hex characters) before any path is built from them, so
a key cannot escape ``root``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from serving.social.domain import BadRequest, NotFound

__all__ = ["LocalBlobStore", "is_valid_key", "stream_digest"]

_KEY_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024
_TMP_PREFIX = ".tmp-"


def is_valid_key(key: object) -> bool:
    """Whether ``key`` is a well-formed blob key (64 lowercase hex characters)."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


class LocalBlobStore:
    """Content-addressed blobs in a local folder; safe to use from several threads and
    processes (all writes are atomic renames of complete files)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # --- helpers -----------------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / key

    def _checked(self, key: str, error: type[Exception]) -> Path:
        if not is_valid_key(key):
            raise error(f"invalid blob key {str(key)[:80]!r}: expected 64 lowercase hex characters")
        return self._file(key)

    def _write(self, folder: Path, copy: Callable[[BinaryIO], str]) -> str:
        """Writes a blob with ``copy(fileobj)``, which returns its key, into a temporary file in
        ``folder`` (on the store's file system, so the rename is atomic), then moves it to the
        key's place, or drops it when that key is stored already. Returns the key."""
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                key = copy(handle)
                handle.flush()
                os.fsync(handle.fileno())
            target = self._file(key)
            if target.is_file():
                os.unlink(tmp_name)
                return key
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return key

    # --- BlobStore ---------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        """Stores ``data`` and returns its key (the SHA-256 hex digest)."""
        data = bytes(data)
        key = hashlib.sha256(data).hexdigest()
        target = self._file(key)
        if target.is_file():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)

        def copy(handle: BinaryIO) -> str:
            handle.write(data)
            return key

        return self._write(target.parent, copy)

    def put_file(self, path: Path) -> str:
        """Stores a copy of the file at ``path`` (hashed while streaming) and returns its key."""
        with open(Path(path), "rb") as source:
            return self.put_stream(source)

    def put_stream(self, source: BinaryIO) -> str:
        """Stores what ``source`` holds from its current position to its end, in chunks (never
        all in memory), and returns its key.

        The bytes are copied into a temporary file in the store's root first (hashing as they
        go), then moved into their content-addressed place, so ``source`` is read once.
        """

        def copy(handle: BinaryIO) -> str:
            digest = hashlib.sha256()
            _copy_hashing(source, handle, digest)
            return digest.hexdigest()

        return self._write(self.root, copy)

    def get(self, key: str) -> bytes:
        """The blob's bytes; raises :class:`NotFound` for an unknown or malformed key."""
        file = self._checked(key, NotFound)
        try:
            return file.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no blob {key}") from None

    def path(self, key: str) -> Path:
        """Local path of an existing blob; raises :class:`NotFound` otherwise."""
        file = self._checked(key, NotFound)
        if not file.is_file():
            raise NotFound(f"no blob {key}")
        return file

    def exists(self, key: str) -> bool:
        """Whether a blob with this key is stored (False for a malformed key)."""
        return is_valid_key(key) and self._file(key).is_file()

    def delete(self, key: str) -> bool:
        """Removes the blob; True if it existed. Raises :class:`BadRequest` for a malformed key."""
        file = self._checked(key, BadRequest)
        try:
            file.unlink()
        except FileNotFoundError:
            return False
        return True

    def check(self) -> None:
        """Raises ``OSError`` unless the root folder exists and is writable."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"blob folder {self.root} is missing or not writable")

    def keys(self) -> Iterator[str]:
        """Every stored key (in no particular order); temporary files are skipped."""
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        if (
                            entry.name[:2] == first.name
                            and entry.name[2:4] == second.name
                            and is_valid_key(entry.name)
                            and entry.is_file()
                        ):
                            yield entry.name


def _subdirs(folder: Path) -> list[Path]:
    """Two-hex-character subfolders of ``folder``, sorted."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                Path(entry.path)
                for entry in entries
                if len(entry.name) == 2
                and all(c in "0123456789abcdef" for c in entry.name)
                and entry.is_dir()
            )
    except FileNotFoundError:
        return []


def stream_digest(source: BinaryIO) -> str:
    """The SHA-256 hex digest (a blob key) of ``source`` from its current position to its end,
    read in chunks; the position is restored."""
    start = source.tell()
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
    source.seek(start)
    return digest.hexdigest()


def _copy_hashing(src: BinaryIO, dst: BinaryIO, digest: Any) -> None:
    """Copies ``src`` to ``dst`` in chunks, feeding each chunk to ``digest``."""
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
