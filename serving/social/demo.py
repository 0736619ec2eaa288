"""The scripted scenario (``recsys backend demo`` and the tests): users register, follow (one
author is a celebrity above the fanout threshold), upload a photo, post, read feeds that merge
pushed and pulled posts, post and view stories, and see a story vanish at 24 h.

It talks HTTP to a real uvicorn server on 127.0.0.1 (a free port) over the configured storage.
The clock is simulated (a :class:`~serving.social.clock.ManualClock` the script advances) so
"24 hours later" takes no time, and the workers are drained synchronously after each write so
every step's outcome is deterministic. The fanout threshold defaults to 3 followers here
(``demo.threshold``) so a celebrity needs only a handful of demo users.
"""

from __future__ import annotations

import io
import json
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from serving.social.clock import ManualClock
from serving.social.settings import BackendSettings


class ApiError(RuntimeError):
    def __init__(self, status: int, body: dict[str, Any], what: str) -> None:
        super().__init__(f"{what} -> HTTP {status}: {body}")
        self.status = status
        self.body = body


class ApiClient:
    """A minimal JSON client over urllib (the demo needs no third-party HTTP library)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def as_user(self, token: str) -> ApiClient:
        return ApiClient(self.base_url, token)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        content_type: str | None = None,
        expect: int | tuple[int, ...] = (200, 201, 202, 204),
    ) -> dict[str, Any]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data, content_type = json.dumps(body).encode(), "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        parsed = json.loads(raw) if raw else {}
        expected = (expect,) if isinstance(expect, int) else expect
        if status not in expected:
            raise ApiError(status, parsed, f"{method} {path}")
        return parsed

    def upload(self, path: str, filename: str, payload: bytes, mime: str) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{filename}"\r\nContent-Type: {mime}\r\n\r\n'
            ).encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.request(
            "POST", path, data=body, content_type=f"multipart/form-data; boundary={boundary}"
        )


def sample_photo(seed: int = 0, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A JPEG photo-like gradient (no files needed)."""
    from PIL import Image

    image = Image.linear_gradient("L").resize(size)
    rgb = Image.merge(
        "RGB",
        (image, image.rotate(90 + seed).resize(size), Image.new("L", size, 40 + seed % 200)),
    )
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=88)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A uvicorn server for an app, in a thread, on 127.0.0.1 (context manager)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def run_scenario(
    api: ApiClient, clock: ManualClock, drain: Callable[[], object], say: Callable[[str], None]
) -> dict[str, Any]:
    """The scenario over HTTP; returns what it observed (the tests assert on it). Raises
    :class:`AssertionError` when the backend does not behave as the design says."""
    tag = uuid.uuid4().hex[:6]
    password = "correct horse battery"

    def register(name: str) -> tuple[int, ApiClient]:
        reply = api.request(
            "POST", "/v1/auth/register", {"username": f"{name}_{tag}", "password": password}
        )
        return reply["user"]["id"], api.as_user(reply["token"])

    ids: dict[str, int] = {}
    users: dict[str, ApiClient] = {}
    for name in ("ana", "ben", "cam", "dee", "star"):
        ids[name], users[name] = register(name)
    say(f"registered {len(users)} users: {', '.join(ids)}")

    # Everyone follows the star (4 followers >= threshold 3: a celebrity, pulled at read time);
    # ana follows ben (below the threshold: pushed).
    for name in ("ana", "ben", "cam", "dee"):
        users[name].request("PUT", f"/v1/users/{ids['star']}/follow")
    users["ana"].request("PUT", f"/v1/users/{ids['ben']}/follow")
    drain()
    star_profile = users["ana"].request("GET", f"/v1/users/{ids['star']}")
    say(f"star has {star_profile['followers']} followers (celebrity: pulled at read time)")

    # ben uploads a photo: 202 at once, then the media worker makes the renditions.
    media = users["ben"].upload("/v1/media", "beach.jpg", sample_photo(1), "image/jpeg")
    assert media["status"] == "processing", media
    drain()
    media = users["ben"].request("GET", f"/v1/media/{media['id']}")
    assert media["status"] == "ready", media
    say(
        f"photo {media['id']} ready: {media['width']}x{media['height']}, renditions "
        f"{sorted(media['renditions'])}, thumbhash {media['thumbhash']}"
    )

    clock.advance(60)
    ben_post = users["ben"].request(
        "POST", "/v1/posts", {"caption": "sunset", "media_id": media["id"], "topic": "travel"}
    )
    clock.advance(60)
    star_post = users["star"].request(
        "POST", "/v1/posts", {"caption": "hello fans", "topic": "music"}
    )
    drain()
    feed = users["ana"].request("GET", "/v1/feed?limit=10")
    order = [item["id"] for item in feed["items"]]
    assert order == [star_post["id"], ben_post["id"]], order
    say(
        f"ana's feed merges pushed (ben's post {ben_post['id']}) and pulled (star's post "
        f"{star_post['id']}): {order}"
    )
    users["ana"].request("PUT", f"/v1/posts/{ben_post['id']}/like")
    users["ana"].request(
        "POST",
        "/v1/events/impressions",
        {"events": [{"post_id": i, "dwell_ms": 1500} for i in order]},
    )

    # Stories: star posts one, ana and ben view it, star sees the viewers; at 24 h it is gone.
    story_media = users["star"].upload("/v1/media", "story.jpg", sample_photo(2), "image/jpeg")
    drain()
    story = users["star"].request("POST", "/v1/stories", {"media_id": story_media["id"]})
    drain()
    tray = users["ana"].request("GET", "/v1/stories/tray")
    assert [i["author"]["id"] for i in tray["items"]] == [ids["star"]], tray
    assert tray["items"][0]["has_unseen"], tray
    for name in ("ana", "ben"):
        users[name].request("POST", f"/v1/stories/{story['id']}/view")
    users["ana"].request("POST", f"/v1/stories/{story['id']}/view")  # a second view: not counted
    viewers = users["star"].request("GET", f"/v1/stories/{story['id']}/viewers")
    assert viewers["count"] == 2, viewers
    say(f"story {story['id']} viewed by {[v['username'] for v in viewers['viewers']]}")

    clock.advance(86_400 - 1)
    still = users["cam"].request("GET", "/v1/stories/tray")
    assert [i["author"]["id"] for i in still["items"]] == [ids["star"]], still
    clock.advance(1)
    gone = users["cam"].request("GET", "/v1/stories/tray")
    assert gone["items"] == [], gone
    users["cam"].request("GET", f"/v1/stories/{story['id']}", expect=404)
    say("1 s before 24 h the story is in cam's tray; at 24 h it is gone")
    drain()

    return {
        "users": ids,
        "feed": order,
        "ben_post": ben_post["id"],
        "star_post": star_post["id"],
        "media": media,
        "story": story["id"],
        "viewers": viewers["count"],
    }


def demo_command(settings: BackendSettings, cfg: dict[str, Any]) -> dict[str, Any]:
    """``recsys backend demo``: the scenario against a live server on ``settings``' storage.
    Embedded storage goes to a temporary folder unless ``demo.keep=true``."""
    from serving.social.api import create_app
    from serving.social.backend import open_backend
    from serving.social.workers import Workers

    options = cfg.get("demo") or {}
    threshold = int(options.get("threshold", 3))
    tmp = None
    if settings.storage == "embedded" and not options.get("keep", False):
        tmp = tempfile.TemporaryDirectory(prefix="social-demo-")
        settings = replace(settings, data_dir=tmp.name, sqlite_path="", blob_dir="")
    settings = replace(
        settings,
        fanout=replace(settings.fanout, threshold=threshold),
        rate_limits=replace(settings.rate_limits, enabled=False),
    )
    clock = ManualClock(time.time())
    backend = open_backend(settings, clock)
    workers = Workers(backend)
    try:
        with LiveServer(create_app(backend=backend, start_workers=False)) as server:
            print(f"demo: server at {server.url} (storage={settings.storage}, simulated clock)")
            result = run_scenario(
                ApiClient(server.url), clock, workers.drain, lambda line: print(f"demo: {line}")
            )
        print("demo: done")
        return result
    finally:
        backend.close()
        if tmp is not None:
            tmp.cleanup()
