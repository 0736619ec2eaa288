"""Production storage with Redis down and with Redis restarted empty.

* Down: what PostgreSQL can serve keeps working (login, single post, profile, the feed through
  the pull path, the story tray from the stories table, writes committed with their outbox
  events), what needs Redis answers 503 with ``Retry-After``, ``/readyz`` names Redis, and
  nothing acknowledged is lost once Redis is back.
* Flushed mid-run: every tray, seen mark and feed is rebuilt from the database.
"""

from __future__ import annotations

import random
import time

import pytest
from fastapi.testclient import TestClient

from serving.social.api import create_app
from serving.social.backend import open_backend
from serving.social.domain import Unavailable
from serving.social.settings import settings_from_mapping
from serving.social.workers import Workers
from tests.serving.social.api.helpers import PASSWORD, Account, follow, jpeg, post, upload, users
from tests.serving.social.redis_server import RedisServer


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def outage_backend(redis_server, postgres_url, tmp_path, clock):
    from serving.social.storage.sql.testing import fresh_engine

    fresh_engine("postgresql", url=postgres_url).dispose()
    settings = settings_from_mapping(
        {
            "storage": "production",
            "data_dir": str(tmp_path / "backend"),
            "postgres_url": postgres_url,
            "redis_url": redis_server.url,
            "fanout": {"threshold": 3},
            "rate_limits": {"reads": {"capacity": 1000, "refill_per_s": 100}},
        }
    )
    backend = open_backend(settings, clock)
    yield backend
    backend.close()


def _story(api: TestClient, workers: Workers, account: Account, color: tuple) -> int:
    media_id = upload(api, account, jpeg(color=color)).json()["id"]
    workers.drain()
    reply = api.post("/v1/stories", json={"media_id": media_id}, headers=account.auth)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def _feed(api: TestClient, account: Account) -> list[int]:
    ids, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        reply = api.get("/v1/feed", params=params, headers=account.auth)
        assert reply.status_code == 200, reply.text
        ids += [item["id"] for item in reply.json()["items"]]
        cursor = reply.json()["next_cursor"]
        if cursor is None:
            return ids


def _expected_feed(backend, user: int) -> list[int]:
    with backend.storage.metadata.transaction() as tx:
        blocked = tx.blocked_either_way(user)
        authors = [a for a in tx.followees(user) if a not in blocked] + [user]
        return [p.id for p in tx.recent_posts(authors, 10_000)]


def _tray(api: TestClient, account: Account) -> dict[int, list[tuple[int, bool]]]:
    reply = api.get("/v1/stories/tray", headers=account.auth)
    assert reply.status_code == 200, reply.text
    return {
        item["author"]["id"]: [(s["id"], s["seen"]) for s in item["stories"]]
        for item in reply.json()["items"]
    }


def _expected_tray(backend, user: int) -> dict[int, list[tuple[int, bool]]]:
    now = backend.ctx.clock.now()
    with backend.storage.metadata.transaction() as tx:
        blocked = tx.blocked_either_way(user)
        authors = [a for a in tx.followees(user) if a not in blocked]
        stories = tx.active_stories(authors, now)
        seen = tx.seen_stories(user, [s.id for s in stories])
    tray: dict[int, list[tuple[int, bool]]] = {}
    for story in stories:
        tray.setdefault(story.author_id, []).append((story.id, story.id in seen))
    return tray


def _drain_once_redis_answers(workers: Workers, timeout_s: float = 10.0) -> None:
    """Drains, retrying while the adapters still fail fast after the outage (about
    ``OUTAGE_BACKOFF_S``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            workers.drain()
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_redis_down_serves_what_postgres_can_and_loses_nothing(
    outage_backend, redis_server
) -> None:
    backend = outage_backend
    workers = Workers(backend, consumer="outage")
    with TestClient(create_app(backend=backend, start_workers=False)) as api:
        ana, ben = users(api, "ana", "ben")
        follow(api, ana, ben)
        before = [post(api, ben, f"before {i}") for i in range(3)]
        story = _story(api, workers, ben, (1, 2, 3))
        workers.drain()
        assert api.get("/readyz").json()["status"] == "ready"

        redis_server.stop()
        login = api.post("/v1/auth/login", json={"username": "ana", "password": PASSWORD})
        assert login.status_code == 200, login.text
        assert api.get(f"/v1/posts/{before[0]}", headers=ana.auth).status_code == 200
        assert api.get(f"/v1/users/{ben.id}", headers=ana.auth).status_code == 200
        assert _feed(api, ana) == before[::-1]  # the pull path
        assert _tray(api, ana) == {ben.id: [(story, False)]}
        assert api.post(f"/v1/stories/{story}/view", headers=ana.auth).status_code == 200
        assert _tray(api, ana) == {ben.id: [(story, True)]}
        during = []
        for i in range(20):
            reply = api.post("/v1/posts", json={"caption": f"during {i}"}, headers=ben.auth)
            assert reply.status_code == 201, reply.text
            during.append(reply.json()["id"])
        comment = api.post(f"/v1/posts/{before[0]}/comments", json={"text": "hi"}, headers=ana.auth)
        assert comment.status_code == 201, comment.text
        assert _feed(api, ana) == (before + during)[::-1]
        # a ranked feed's later pages live in Redis: those need it
        snapshot = api.get("/v1/feed", params={"cursor": "rsession.20"}, headers=ana.auth)
        assert snapshot.status_code == 503, snapshot.text
        assert int(snapshot.headers["retry-after"]) >= 1
        assert snapshot.json()["error"]["code"] == "unavailable"
        ready = api.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["dependencies"]["redis"]["ok"] is False
        assert ready.json()["dependencies"]["metadata"]["ok"] is True

        redis_server.start()  # back, and empty
        _drain_once_redis_answers(workers)  # the outbox events of the writes made meanwhile
        assert api.get("/readyz").json()["status"] == "ready"
        assert _feed(api, ana) == (before + during)[::-1]
        assert backend.storage.timelines.page(ana.id, 100) == (before + during)[::-1]
        assert _tray(api, ana) == {ben.id: [(story, True)]}


@pytest.mark.parametrize("storage_kind", ["production"])
def test_flushing_redis_mid_run_rebuilds_every_tray_and_feed(
    api, backend, workers, redis_prefix, redis_url
) -> None:
    import redis

    rng = random.Random(15)
    people = users(api, *[f"user{i}" for i in range(6)])
    for a in people:
        for b in rng.sample(people, 3):
            if a.id != b.id:
                follow(api, a, b)
    for i in range(25):
        post(api, rng.choice(people), f"post {i}")
    stories = [_story(api, workers, author, (i, 9, 9)) for i, author in enumerate(people[:4])]
    workers.drain()
    for viewer in people:
        for story in rng.sample(stories, 2):
            api.post(f"/v1/stories/{story}/view", headers=viewer.auth)  # 404 when not followed
        _feed(api, viewer)  # every timeline built, every graph cached
        _tray(api, viewer)

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{redis_prefix}*"))
    assert keys  # timelines, trays, caches, the bus: all of it goes
    client.delete(*keys)

    for i in range(5):  # the run goes on after the flush
        post(api, rng.choice(people), f"after {i}")
    stories.append(_story(api, workers, people[4], (7, 7, 7)))
    api.post(f"/v1/stories/{stories[0]}/view", headers=people[5].auth)
    workers.drain()
    for viewer in people:
        assert _feed(api, viewer) == _expected_feed(backend, viewer.id), viewer.username
        assert _tray(api, viewer) == _expected_tray(backend, viewer.id), viewer.username
    assert backend.storage.stories.is_built()
    client.close()
