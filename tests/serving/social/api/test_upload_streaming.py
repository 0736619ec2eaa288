"""Uploads are streamed: the byte limit is enforced on the request stream itself (the rest of an
oversized body is never read) and a large video passes through a temporary file, never whole
in memory. Driven at the ASGI level, so the test controls every chunk the server reads."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import Iterator

from serving.social.api import create_app
from tests.serving.social.api.helpers import register

BOUNDARY = "upload-boundary-15"
CHUNK = 64 * 1024


def _mp4_head() -> bytes:
    """An ISO-BMFF ``ftyp`` box that identifies the file as MP4."""
    return (24).to_bytes(4, "big") + b"ftypisom" + b"\0\0\2\0" + b"isomiso2"


def _multipart(payload: Iterator[bytes], name: str = "clip.mp4") -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
        "\r\nContent-Type: video/mp4\r\n\r\n"
    ).encode()
    yield from payload
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _video(total: int) -> Iterator[bytes]:
    yield _mp4_head()
    sent = len(_mp4_head())
    while sent < total:
        step = min(CHUNK, total - sent)
        yield b"\x11" * step
        sent += step


def _post(app, token: str, body: Iterator[bytes]) -> tuple[int, dict, int]:
    """POSTs ``body`` chunk by chunk to /v1/media; returns (status, JSON answer, bytes read)."""
    pulled = 0
    answer: dict = {"status": None, "body": b""}

    async def receive() -> dict:
        nonlocal pulled
        chunk = next(body, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/media",
        "raw_path": b"/v1/media",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return answer["status"], json.loads(answer["body"]), pulled


def test_the_limit_stops_reading_an_oversized_body(make_backend) -> None:
    backend = make_backend({"media": {"max_image_bytes": 100_000, "max_video_bytes": 200_000}})
    app = create_app(backend=backend, start_workers=False)
    token = _token(app)
    endless = _multipart(_video(50 * 1024 * 1024))  # 50 MiB, sent without a Content-Length
    status, body, pulled = _post(app, token, endless)
    assert status == 413, body
    assert body["error"]["field"] == "file"
    # reading stopped at the cap (limit + multipart framing), one chunk past it at most
    assert pulled <= 200_000 + 64 * 1024 + CHUNK
    assert list(backend.storage.blobs.keys()) == []


def test_a_large_video_is_not_held_in_memory(make_backend) -> None:
    backend = make_backend()
    app = create_app(backend=backend, start_workers=False)
    token = _token(app)
    size = 40 * 1024 * 1024
    tracemalloc.start()
    try:
        status, body, _ = _post(app, token, _multipart(_video(size)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 202, body
    assert body["kind"] == "video" and body["status"] == "processing"
    assert peak < 8 * 1024 * 1024, peak  # a 40 MiB upload; 1 MiB spooled in memory at most
    with backend.storage.metadata.transaction() as tx:
        raw = tx.get_media(body["id"]).raw_key
    assert backend.storage.blobs.path(raw).stat().st_size == size


def _token(app) -> str:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        return register(client, "ana").token
