"""``Idempotency-Key`` on posts, comments, stories and uploads, on both storage configurations: a
retry answers the first result and creates nothing twice, also when the first answer was lost
with its connection after the commit."""

from __future__ import annotations

import json
import socket
import time

from serving.social.api import create_app
from tests.serving.social.api.helpers import PASSWORD, jpeg, post, upload, users
from tests.serving.social.api.live import live_server


def _keyed(account, key: str) -> dict[str, str]:
    return {**account.auth, "Idempotency-Key": key}


def test_retries_answer_the_first_result(api, backend, workers) -> None:
    ana, ben = users(api, "ana", "ben")
    first = api.post("/v1/posts", json={"caption": "once"}, headers=_keyed(ana, "k-post"))
    again = api.post("/v1/posts", json={"caption": "once"}, headers=_keyed(ana, "k-post"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    # the same key is the caller's own: another user's key of the same text is another post
    other = api.post("/v1/posts", json={"caption": "once"}, headers=_keyed(ben, "k-post"))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    # reused for something else: a conflict, never a silent replay
    clash = api.post("/v1/posts", json={"caption": "twice"}, headers=_keyed(ana, "k-post"))
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "Idempotency-Key"

    target = post(api, ben, "comment here")
    path = f"/v1/posts/{target}/comments"
    c1 = api.post(path, json={"text": "nice"}, headers=_keyed(ana, "k-comment"))
    c2 = api.post(path, json={"text": "nice"}, headers=_keyed(ana, "k-comment"))
    assert c1.status_code == c2.status_code == 201 and c1.json() == c2.json()

    m1 = upload(api, ana, jpeg(), name="a.jpg")
    files = {"file": ("a.jpg", jpeg(), "image/jpeg")}
    u1 = api.post("/v1/media", files=files, headers=_keyed(ana, "k-upload"))
    u2 = api.post("/v1/media", files=files, headers=_keyed(ana, "k-upload"))
    assert u1.status_code == u2.status_code == 202 and u1.json() == u2.json()
    assert u1.json()["id"] != m1.json()["id"]  # no key: a new item each time
    workers.drain()
    s1 = api.post("/v1/stories", json={"media_id": u1.json()["id"]}, headers=_keyed(ana, "k-story"))
    s2 = api.post("/v1/stories", json={"media_id": u1.json()["id"]}, headers=_keyed(ana, "k-story"))
    assert s1.status_code == s2.status_code == 201 and s1.json() == s2.json()

    with backend.storage.metadata.transaction() as tx:
        assert [p.caption for p in tx.recent_posts([ana.id], 10)] == ["once"]
        assert len(tx.comments(target, 0, 10)) == 1
        assert len(tx.active_stories([ana.id], backend.ctx.clock.now())) == 1
    bad = api.post("/v1/posts", json={"caption": "x"}, headers=_keyed(ana, "bad key"))
    assert bad.status_code == 422  # a space: not a visible ASCII key


def test_a_failed_write_does_not_take_the_key(api) -> None:
    (ana,) = users(api, "ana")
    failed = api.post("/v1/posts", json={"media_id": 999}, headers=_keyed(ana, "k"))
    assert failed.status_code == 404
    ok = api.post("/v1/posts", json={"caption": "now"}, headers=_keyed(ana, "k"))
    assert ok.status_code == 201


def _send_and_hang_up(host: str, port: int, path: str, body: dict, headers: dict) -> None:
    """Sends a whole request and closes the connection before reading any answer."""
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head += [f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + data)
        sock.shutdown(socket.SHUT_RDWR)


def test_retry_after_the_connection_dropped_past_the_commit(backend) -> None:
    import httpx

    app = create_app(backend=backend, start_workers=False)
    with live_server(app) as (host, port):
        base = f"http://{host}:{port}"
        body = {"username": "ana", "password": PASSWORD}
        token = httpx.post(f"{base}/v1/auth/register", json=body).json()["token"]
        me = httpx.get(f"{base}/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        user = me.json()["id"]
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "lost-answer-1"}
        _send_and_hang_up(host, port, "/v1/posts", {"caption": "exactly once"}, headers)
        deadline = time.monotonic() + 10
        while True:  # the server commits although nobody reads its answer
            with backend.storage.metadata.transaction() as tx:
                made = tx.recent_posts([user], 10)
            if made or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [p.caption for p in made] == ["exactly once"]
        retry = httpx.post(f"{base}/v1/posts", json={"caption": "exactly once"}, headers=headers)
        assert retry.status_code == 201, retry.text
        assert retry.json()["id"] == made[0].id
    with backend.storage.metadata.transaction() as tx:
        assert len(tx.recent_posts([user], 10)) == 1


def test_old_keys_are_purged(api, backend, clock, workers) -> None:
    (ana,) = users(api, "ana")
    api.post("/v1/posts", json={"caption": "old"}, headers=_keyed(ana, "k-old"))
    clock.advance(backend.settings.server.idempotency_ttl_s + 1)
    assert workers.cleanup() >= 1
    again = api.post("/v1/posts", json={"caption": "old"}, headers=_keyed(ana, "k-old"))
    assert again.status_code == 201  # a new post: the key had expired
    with backend.storage.metadata.transaction() as tx:
        assert len(tx.recent_posts([ana.id], 10)) == 2
