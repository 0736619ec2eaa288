"""LocalBlobStore: content addressing, dedupe, atomic writes, key validation."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from serving.social.domain import BadRequest, NotFound
from serving.social.storage.blobs import LocalBlobStore, is_valid_key


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_get_roundtrip_and_layout(store: LocalBlobStore) -> None:
    data = b"hello blob"
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.get(key) == data
    assert store.exists(key)
    path = store.path(key)
    assert path == store.root / key[:2] / key[2:4] / key
    assert path.read_bytes() == data
    assert list(store.keys()) == [key]


def test_empty_blob(store: LocalBlobStore) -> None:
    key = store.put(b"")
    assert key == hashlib.sha256(b"").hexdigest()
    assert store.get(key) == b""


def test_put_dedupes_and_does_not_rewrite(store: LocalBlobStore) -> None:
    key = store.put(b"same")
    before = store.path(key).stat()
    assert store.put(b"same") == key
    after = store.path(key).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert list(store.keys()) == [key]


def test_put_file_streams_and_copies(store: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks
    source.write_bytes(data)
    key = store.put_file(source)
    assert key == hashlib.sha256(data).hexdigest()
    assert source.exists()  # copied, not moved
    assert store.get(key) == data
    assert store.put(data) == key  # same content through put: same key, stored once
    assert store.put_file(source) == key
    assert list(store.keys()) == [key]


def test_no_temporary_files_left(store: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"file content")
    keys = {store.put(b"a"), store.put(b"b"), store.put(b"a"), store.put_file(source)}
    store.put_file(source)
    names = {p.name for p in _all_files(store.root)}
    assert names == keys
    assert not any(name.startswith(".tmp") for name in names)


def test_failed_write_leaves_no_temporary_file(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"never stored")
    with pytest.raises(OSError, match="disk full"):
        (store.root.parent / "src").write_bytes(b"also never")
        store.put_file(store.root.parent / "src")
    monkeypatch.undo()
    assert _all_files(store.root) == []
    assert list(store.keys()) == []


def test_unknown_keys(store: LocalBlobStore) -> None:
    missing = "0" * 64
    with pytest.raises(NotFound):
        store.get(missing)
    with pytest.raises(NotFound):
        store.path(missing)
    assert not store.exists(missing)
    assert store.delete(missing) is False


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "..",
        "",
        "/etc/passwd",
        "A" * 64,  # uppercase
        "0" * 63,
        "0" * 65,
        "g" * 64,
        "00/00/" + "0" * 58,
        "0" * 63 + "\n",
    ],
)
def test_malformed_keys_rejected(store: LocalBlobStore, key: str) -> None:
    assert not is_valid_key(key)
    with pytest.raises(NotFound):
        store.get(key)
    with pytest.raises(NotFound):
        store.path(key)
    assert store.exists(key) is False
    with pytest.raises(BadRequest):
        store.delete(key)


def test_traversal_cannot_reach_outside(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"top secret")
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(NotFound):
        store.get("../secret")
    assert secret.exists()


def test_delete(store: LocalBlobStore) -> None:
    key = store.put(b"to delete")
    assert store.delete(key) is True
    assert not store.exists(key)
    assert store.delete(key) is False
    with pytest.raises(NotFound):
        store.get(key)
    assert store.put(b"to delete") == key  # can be stored again
    assert store.get(key) == b"to delete"


def test_keys_ignores_foreign_files(store: LocalBlobStore) -> None:
    keys = {store.put(bytes([i])) for i in range(5)}
    (store.root / "README").write_text("not a blob")
    (store.root / "ab").mkdir(exist_ok=True)
    (store.root / "ab" / ".tmp-xyz").write_bytes(b"partial")
    assert set(store.keys()) == keys


def test_concurrent_puts_of_same_content(store: LocalBlobStore) -> None:
    data = os.urandom(200_000)
    results: list[str] = []

    def worker() -> None:
        results.append(store.put(data))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert store.get(results[0]) == data
    assert [p.name for p in _all_files(store.root)] == [results[0]]


def test_reopen_sees_existing_blobs(tmp_path: Path) -> None:
    key = LocalBlobStore(tmp_path / "b").put(b"persist")
    assert LocalBlobStore(str(tmp_path / "b")).get(key) == b"persist"
