"""Inputs no storage can hold are a 422 naming the field on both storage configurations (PostgreSQL
text cannot contain NUL, so SQLite must not accept it either), and a 500 leaves the keep-alive
connection usable."""

from __future__ import annotations

import http.client
import json

import pytest

from serving.social.api import create_app
from tests.serving.social.api.helpers import PASSWORD, post, register, users
from tests.serving.social.api.live import live_server

NUL = "a\x00b"
SURROGATE = "a\ud800b"


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "lone-surrogate"])
def test_unstorable_text_is_a_422_naming_the_field(api, backend, bad) -> None:
    ana = register(api, "ana")
    target = post(api, ana, "hello")
    cases = [
        ("/v1/auth/register", {"username": bad, "password": PASSWORD}, "username", {}),
        ("/v1/auth/register", {"username": "bob", "password": bad * 8}, "password", {}),
        (
            "/v1/auth/register",
            {"username": "bob", "password": PASSWORD, "country": bad},
            "country",
            {},
        ),
        ("/v1/auth/login", {"username": bad, "password": PASSWORD}, "username", {}),
        ("/v1/posts", {"caption": bad}, "caption", ana.auth),
        ("/v1/posts", {"caption": "x", "topic": bad}, "topic", ana.auth),
        (f"/v1/posts/{target}/comments", {"text": bad}, "text", ana.auth),
    ]
    for path, body, field, headers in cases:
        data = json.dumps(body)  # escapes the NUL / surrogate as \\u0000 / \\ud800
        reply = api.post(
            path, content=data, headers={**headers, "Content-Type": "application/json"}
        )
        assert reply.status_code == 422, (path, field, reply.text)
        error = reply.json()["error"]
        assert error["code"] == "invalid_request" and error["field"] == field, error
    with backend.storage.metadata.transaction() as tx:
        assert tx.user_credentials("bob") is None
        assert [p.id for p in tx.recent_posts([ana.id], 10)] == [target]
        assert tx.comments(target, 0, 10) == []


def test_a_500_keeps_the_keep_alive_connection(backend, monkeypatch) -> None:
    app = create_app(backend=backend, start_workers=False)
    with live_server(app) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request(
            "POST",
            "/v1/auth/register",
            body=json.dumps({"username": "ana", "password": PASSWORD}),
            headers={"Content-Type": "application/json"},
        )
        reply = conn.getresponse()
        token = json.loads(reply.read())["token"]
        auth = {"Authorization": f"Bearer {token}"}

        def broken(*args: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(backend.posts, "get", broken)
        conn.request("GET", "/v1/posts/1", headers=auth)
        failed = conn.getresponse()
        assert failed.status == 500
        assert json.loads(failed.read()) == {
            "error": {"code": "internal", "message": "internal error"}
        }
        for _ in range(3):  # the same connection keeps working
            conn.request("GET", "/v1/users/me", headers=auth)
            again = conn.getresponse()
            assert again.status == 200, again.read()
            assert json.loads(again.read())["username"] == "ana"
        conn.close()


def test_strings_hold_ordinary_unicode(api) -> None:
    (ana,) = users(api, "ana")
    caption = "héllo wörld ✓ 🎉"
    reply = api.post("/v1/posts", json={"caption": caption}, headers=ana.auth)
    assert reply.status_code == 201 and reply.json()["caption"] == caption
