"""Accounts, bearer auth on every write, ownership checks and rate limits."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from serving.social.api import create_app
from tests.serving.social.api.helpers import PASSWORD, follow, post, register, users


def test_register_login_logout(api) -> None:
    ana = register(api, "ana")
    dup = api.post("/v1/auth/register", json={"username": "ana", "password": PASSWORD})
    assert dup.status_code == 409 and dup.json()["error"]["field"] == "username"
    bad_name = api.post("/v1/auth/register", json={"username": "A!", "password": PASSWORD})
    assert bad_name.status_code == 422 and bad_name.json()["error"]["field"] == "username"
    short = api.post("/v1/auth/register", json={"username": "bob", "password": "x"})
    assert short.status_code == 422 and short.json()["error"]["field"] == "password"
    wrong = api.post("/v1/auth/login", json={"username": "ana", "password": "nope-nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    unknown = api.post("/v1/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401
    assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]
    login = api.post("/v1/auth/login", json={"username": "ana", "password": PASSWORD})
    token = login.json()["token"]
    me = api.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "ana" and me.json()["id"] == ana.id
    assert (
        api.post("/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    )
    assert api.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert api.get("/v1/users/me", headers=ana.auth).status_code == 200  # other session intact


def test_tokens_are_stored_hashed(api, backend) -> None:
    ana = register(api, "ana")
    with backend.storage.metadata.transaction() as tx:
        assert tx.user_for_token(ana.token, 0.0) is None  # the raw token is not a key
    from serving.social.services.accounts import token_hash

    with backend.storage.metadata.transaction() as tx:
        assert tx.user_for_token(token_hash(ana.token), backend.ctx.clock.now()) == ana.id


def test_profiles_and_graph_errors(api) -> None:
    ana, ben = users(api, "ana", "ben")
    follow(api, ana, ben)
    assert api.get(f"/v1/users/{ben.id}", headers=ana.auth).json()["followers"] == 1
    assert api.put(f"/v1/users/{ana.id}/follow", headers=ana.auth).status_code == 400
    assert api.put("/v1/users/999999/follow", headers=ana.auth).status_code == 404
    again = api.put(f"/v1/users/{ben.id}/follow", headers=ana.auth).json()
    assert again == {"following": True, "changed": False}
    assert api.get("/v1/users/999999", headers=ana.auth).status_code == 404


def _write_routes(app) -> list[tuple[str, str]]:
    routes = []
    # The routers are included, so the app's routes are a tree: walk its flattened routes.
    for route in iter_route_contexts(app.routes):
        for method in getattr(route, "methods", set()) & {"POST", "PUT", "DELETE", "PATCH"}:
            if route.path not in ("/v1/auth/register", "/v1/auth/login"):
                routes.append((method, re.sub(r"\{[^}]+\}", "1", route.path)))
    return sorted(routes)


def test_every_write_needs_a_valid_token(backend) -> None:
    app = create_app(backend=backend, start_workers=False)
    routes = _write_routes(app)
    assert len(routes) >= 15
    with TestClient(app) as api:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
                reply = api.request(method, path, headers=headers)
                assert reply.status_code == 401, (method, path, headers, reply.text)


def test_no_one_edits_another_users_content(api, workers) -> None:
    ana, ben = users(api, "ana", "ben")
    follow(api, ben, ana)
    p = post(api, ana, "mine")
    assert api.delete(f"/v1/posts/{p}", headers=ben.auth).status_code == 403
    assert api.get(f"/v1/posts/{p}", headers=ben.auth).status_code == 200  # still there
    assert api.delete("/v1/posts/999999", headers=ben.auth).status_code == 404
    assert api.delete(f"/v1/posts/{p}", headers=ana.auth).status_code == 204


def test_malformed_requests_are_422_with_fields(api) -> None:
    (ana,) = users(api, "ana")
    reply = api.post("/v1/posts", json={"caption": 5, "media_id": "x"}, headers=ana.auth)
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["code"] == "invalid_request"
    assert {f["loc"] for f in error["fields"]} >= {"body.media_id"}
    assert (
        api.post(
            "/v1/posts",
            content=b"{not json",
            headers={**ana.auth, "Content-Type": "application/json"},
        ).status_code
        == 422
    )
    empty = api.post("/v1/posts", json={}, headers=ana.auth)
    assert empty.status_code == 400 and empty.json()["error"]["field"] == "caption"


def test_openapi_schema_is_served(api) -> None:
    schema = api.get("/openapi.json").json()
    assert "/v1/feed" in schema["paths"] and "/v1/media" in schema["paths"]
    assert api.get("/healthz").json()["status"] == "ok"


@pytest.fixture
def limited(make_backend):
    backend = make_backend(
        {
            "rate_limits": {
                "enabled": True,
                "writes": {"capacity": 3, "refill_per_s": 0.5},
                "auth": {"capacity": 2, "refill_per_s": 0.01},
            }
        }
    )
    with TestClient(create_app(backend=backend, start_workers=False)) as api:
        yield api, backend


def test_rate_limit_answers_429_with_retry_after(limited, clock) -> None:
    api, _ = limited
    ana, ben = users(api, "ana", "ben")  # 2 registrations: the auth bucket is now empty
    third = api.post("/v1/auth/register", json={"username": "cam", "password": PASSWORD})
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    codes = [
        api.post("/v1/posts", json={"caption": f"p{i}"}, headers=ana.auth).status_code
        for i in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    denied = api.post("/v1/posts", json={"caption": "again"}, headers=ana.auth)
    assert denied.headers["retry-after"] == "2"  # one token at 0.5/s
    assert denied.json()["error"]["code"] == "rate_limited"
    # per user: ben has his own bucket
    assert api.post("/v1/posts", json={"caption": "ben"}, headers=ben.auth).status_code == 201
    clock.advance(2)
    assert api.post("/v1/posts", json={"caption": "later"}, headers=ana.auth).status_code == 201
    assert api.post("/v1/posts", json={"caption": "x"}, headers=ana.auth).status_code == 429


def test_ids_beyond_bigint_are_refused_not_crashed(api) -> None:
    """Ids beyond the API's bound get a 422 (path, query, body, feed cursor), never a 500."""
    (ana,) = users(api, "ana")
    big = 2**70
    requests = [
        ("GET", f"/v1/posts/{big}", None, 422),
        ("PUT", f"/v1/users/{big}/follow", None, 422),
        ("GET", f"/v1/stories/{big}", None, 422),
        ("GET", f"/v1/media/{big}", None, 422),
        ("GET", "/v1/posts/-5", None, 422),
        ("GET", f"/v1/users/{ana.id}/posts?cursor={big}", None, 422),
        ("GET", f"/v1/posts/1/comments?cursor={big}", None, 422),
        ("POST", "/v1/posts", {"media_id": big}, 422),
        ("POST", "/v1/stories", {"media_id": big}, 422),
        ("POST", "/v1/events/impressions", {"events": [{"post_id": big}]}, 422),
        ("GET", f"/v1/feed?cursor=c{big}", None, 422),
    ]
    for method, path, body, status in requests:
        reply = api.request(method, path, json=body, headers=ana.auth)
        assert reply.status_code == status, (method, path, reply.text)
        assert reply.json()["error"]["code"] in ("invalid_request", "bad_request")
