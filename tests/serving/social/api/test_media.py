"""Media through the HTTP API: 202 + asynchronous processing, bad media (4xx or failed with a
reason, nothing half-stored), blob serving with cache headers, posts with media."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zlib

import pytest
from PIL import Image

from tests.serving.social.api.helpers import jpeg, upload, users


def _png_claiming(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (80, 40), (250, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    exif[0x010F] = "TestCam"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_upload_answers_202_then_becomes_ready(api, workers, backend) -> None:
    (ana,) = users(api, "ana")
    reply = upload(api, ana, _exif_rotated_jpeg())
    assert reply.status_code == 202, reply.text
    media = reply.json()
    assert media["status"] == "processing"
    workers.drain()
    ready = api.get(f"/v1/media/{media['id']}", headers=ana.auth).json()
    assert ready["status"] == "ready"
    assert (ready["width"], ready["height"]) == (40, 80)  # orientation applied
    assert ready["thumbhash"]
    assert set(ready["renditions"]) == {"1440", "250"}
    blob = api.get(ready["renditions"]["250"]["url"])
    assert blob.status_code == 200
    assert blob.headers["content-type"] == "image/jpeg"
    cache = blob.headers["cache-control"]
    assert cache.startswith("private, max-age=") and 1800 <= int(cache.split("=")[1]) <= 3600
    served = Image.open(io.BytesIO(blob.content))
    assert served.size == (40, 80) and not served.getexif()  # EXIF stripped
    again = api.get(
        ready["renditions"]["250"]["url"], headers={"If-None-Match": blob.headers["etag"]}
    )
    assert again.status_code == 304
    unsigned = ready["renditions"]["250"]["url"].partition("?")[0]
    assert api.get(unsigned).status_code == 403
    assert api.get("/v1/blobs/" + "0" * 64).status_code == 403
    signed_missing = backend.ctx.urls.url("0" * 64)
    assert api.get(signed_missing).status_code == 404
    assert api.get("/v1/blobs/..%2F..%2Fetc%2Fpasswd").status_code == 404


@pytest.mark.parametrize(
    ("name", "data", "mime", "status"),
    [
        ("zero bytes", b"", "image/jpeg", 400),
        ("wrong MIME", jpeg(), "image/png", 400),
        ("decompression bomb", _png_claiming(100_000, 100_000), "image/png", 413),
        ("huge dimensions", _png_claiming(20_000, 10), "image/png", 413),
        ("unsupported GIF", b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 20, "image/gif", 415),
        ("random bytes", bytes(range(256)) * 4, "application/octet-stream", 415),
    ],
)
def test_bad_uploads_get_a_clear_4xx_and_store_nothing(
    api, backend, name, data, mime, status
) -> None:
    (ana,) = users(api, "ana")
    reply = upload(api, ana, data, mime)
    assert reply.status_code == status, (name, reply.text)
    error = reply.json()["error"]
    assert error["field"] == "file" and error["message"], error
    assert list(backend.storage.blobs.keys()) == []


def test_truncated_image_fails_with_reason_and_no_renditions(api, workers, backend) -> None:
    (ana,) = users(api, "ana")
    whole = jpeg((400, 300))
    reply = upload(api, ana, whole[: len(whole) // 2])
    assert reply.status_code == 202, reply.text
    workers.drain()
    media = api.get(f"/v1/media/{reply.json()['id']}", headers=ana.auth).json()
    assert media["status"] == "failed"
    assert "truncated" in media["reason"] or "corrupt" in media["reason"]
    assert "renditions" not in media
    assert len(list(backend.storage.blobs.keys())) == 1  # the original only: no half renditions
    # a failed item cannot be posted, and other users do not see it at all
    post = api.post("/v1/posts", json={"media_id": media["id"]}, headers=ana.auth)
    assert post.status_code == 409 and "failed" in post.json()["error"]["message"]
    (ben,) = users(api, "ben")
    assert api.get(f"/v1/media/{media['id']}", headers=ben.auth).status_code == 404


def test_malformed_exif_is_stripped_not_fatal(api, workers) -> None:
    (ana,) = users(api, "ana")
    good = jpeg((50, 50))
    # an APP1 segment that says Exif but holds garbage, right after SOI
    garbage = b"Exif\x00\x00MM\x00\x2a\x00\x00\xff\xff\xff\xff" + b"\x13" * 40
    bad = good[:2] + b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage + good[2:]
    reply = upload(api, ana, bad)
    assert reply.status_code == 202, reply.text
    workers.drain()
    media = api.get(f"/v1/media/{reply.json()['id']}", headers=ana.auth).json()
    assert media["status"] == "ready", media
    served = api.get(media["renditions"]["1440"]["url"])
    assert not Image.open(io.BytesIO(served.content)).getexif()


def test_post_with_media_checks_owner_and_status(api, workers) -> None:
    ana, ben = users(api, "ana", "ben")
    media_id = upload(api, ana, jpeg()).json()["id"]
    early = api.post("/v1/posts", json={"media_id": media_id}, headers=ana.auth)
    assert early.status_code == 409  # still processing
    workers.drain()
    stolen = api.post("/v1/posts", json={"media_id": media_id}, headers=ben.auth)
    assert stolen.status_code == 403
    ok = api.post("/v1/posts", json={"media_id": media_id, "caption": "look"}, headers=ana.auth)
    assert ok.status_code == 201
    assert ok.json()["media_type"] == "image"
    assert ok.json()["media"]["status"] == "ready"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (Debian package) not installed")
def test_video_upload_transcodes(api, workers, tmp_path) -> None:
    (ana,) = users(api, "ana")
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=160x120:rate=10",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(clip),
        ],
        check=True,
    )
    reply = upload(api, ana, clip.read_bytes(), "video/mp4", "clip.mp4")
    assert reply.status_code == 202, reply.text
    workers.drain()
    media = api.get(f"/v1/media/{reply.json()['id']}", headers=ana.auth).json()
    assert media["status"] == "ready", media
    assert {"h264", "poster"} <= set(media["renditions"])
    h264 = api.get(media["renditions"]["h264"]["url"])
    assert h264.headers["content-type"] == "video/mp4"
