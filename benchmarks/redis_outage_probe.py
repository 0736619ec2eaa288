"""Probe of the production backend through Redis failures: a Redis outage (the server killed),
then a restart that loses everything. Prints, as JSON, the status codes each kind of request
got while Redis was down, how many acknowledged posts survived, and how much of the story
trays, seen marks and feeds came back after the restart.

    python benchmarks/redis_outage_probe.py --postgres-url postgresql+psycopg://...

It starts a Redis of its own (``redis-server`` on a free port, no persistence) and works in a
fresh PostgreSQL database it creates on the given server and drops at the end. Talks HTTP only
(FastAPI's TestClient), so it runs against any version of the backend.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg
import redis
from fastapi.testclient import TestClient
from PIL import Image

PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 30)).save(out, "JPEG")
    return out.getvalue()


def _retrying(step, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return step()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def probe(postgres_url: str, writes: int) -> dict:
    from serving.social.api import create_app
    from serving.social.backend import open_backend
    from serving.social.settings import settings_from_mapping
    from serving.social.workers import Workers

    port = _free_port()
    server = _redis(port)
    name = f"probe_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data_dir = tempfile.mkdtemp(prefix="probe-")
    settings = settings_from_mapping(
        {
            "storage": "production",
            "data_dir": data_dir,
            "postgres_url": f"{postgres_url.rpartition('/')[0]}/{name}",
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "rate_limits": {
                bucket: {"capacity": 10_000, "refill_per_s": 1_000}
                for bucket in ("reads", "writes", "uploads", "auth")
            },
        }
    )
    backend = open_backend(settings)
    workers = Workers(backend, consumer="probe")
    report: dict = {}
    try:
        app = create_app(backend=backend, start_workers=False)
        with TestClient(app, raise_server_exceptions=False) as api:

            def account(username: str) -> dict[str, str]:
                body = {"username": username, "password": PASSWORD}
                token = api.post("/v1/auth/register", json=body).json()["token"]
                return {"Authorization": f"Bearer {token}"}

            ana, ben = account("ana"), account("ben")
            ben_id = api.get("/v1/users/me", headers=ben).json()["id"]
            api.put(f"/v1/users/{ben_id}/follow", headers=ana)
            first = api.post("/v1/posts", json={"caption": "before"}, headers=ben).json()["id"]
            files = {"file": ("a.jpg", _jpeg(), "image/jpeg")}
            media = api.post("/v1/media", files=files, headers=ben).json()["id"]
            workers.drain()
            story = api.post("/v1/stories", json={"media_id": media}, headers=ben).json()["id"]
            api.post(f"/v1/stories/{story}/view", headers=ana)
            workers.drain()
            api.get("/v1/feed", headers=ana)

            server.kill()
            server.wait()
            statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            latency: dict[str, list[float]] = collections.defaultdict(list)

            def call(kind: str, method: str, path: str, **kwargs: object) -> object:
                start = time.perf_counter()
                reply = api.request(method, path, **kwargs)
                latency[kind].append(time.perf_counter() - start)
                statuses[kind][reply.status_code] += 1
                return reply

            login = {"username": "ana", "password": PASSWORD}
            for _ in range(5):
                call("login", "POST", "/v1/auth/login", json=login)
                call("get post", "GET", f"/v1/posts/{first}", headers=ana)
                call("profile", "GET", f"/v1/users/{ben_id}", headers=ana)
                call("feed", "GET", "/v1/feed", headers=ana)
                call("story tray", "GET", "/v1/stories/tray", headers=ana)
                call("healthz", "GET", "/healthz")
                call("readyz", "GET", "/readyz")
            acknowledged = []
            for i in range(writes):
                body = {"caption": f"during {i}"}
                reply = call("create post", "POST", "/v1/posts", json=body, headers=ben)
                if reply.status_code == 201:
                    acknowledged.append(reply.json()["id"])
            report["while_redis_down"] = {
                kind: {
                    "statuses": dict(counter),
                    "median_ms": round(sorted(latency[kind])[len(latency[kind]) // 2] * 1000, 1),
                }
                for kind, counter in statuses.items()
            }

            server = _redis(port)  # back, empty: a restart without persistence
            _retrying(workers.drain)
            with backend.storage.metadata.transaction() as tx:
                stored = {p.id for p in tx.recent_posts([ben_id], 100_000)}
                ana_id = tx.user_credentials("ana")[0].id
                active = tx.active_stories([ben_id], backend.ctx.clock.now())
                seen = tx.seen_stories(ana_id, [s.id for s in active])
            feed = _retrying(lambda: api.get("/v1/feed?limit=100", headers=ana).json()["items"])
            feed_ids = {item["id"] for item in feed}
            tray = api.get("/v1/stories/tray", headers=ana).json()["items"]
            tray_stories = [s for item in tray for s in item["stories"]]
            report["after_restart"] = {
                "acknowledged_posts": len(acknowledged),
                "acknowledged_kept_in_db": len(set(acknowledged) & stored),
                "acknowledged_in_feed": len(set(acknowledged) & feed_ids),
                "active_stories_in_db": len(active),
                "stories_in_tray": len(tray_stories),
                "seen_marks_in_db": len(seen),
                "seen_marks_in_tray": sum(1 for s in tray_stories if s["seen"]),
            }
    finally:
        backend.close()
        server.kill()
        server.wait()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("RECSYS_TEST_POSTGRES_URL", "")
    parser.add_argument("--postgres-url", default=default, required=not default)
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(probe(args.postgres_url, args.writes), indent=1))


if __name__ == "__main__":
    main()
