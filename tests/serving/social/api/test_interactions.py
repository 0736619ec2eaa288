"""Likes, saves, comments, shares and impressions: rows, counts and the event log."""

from __future__ import annotations

from tests.serving.social.api.helpers import follow, post, users


def _events(backend) -> list:
    return [e for batch in backend.storage.metadata.iter_events() for e in batch]


def test_interactions_update_counts_and_log_events(api, backend, clock) -> None:
    ana, ben = users(api, "ana", "ben")
    follow(api, ana, ben)
    p = post(api, ben, "hello")
    clock.advance(5)
    liked = api.put(f"/v1/posts/{p}/like", headers=ana.auth).json()
    assert liked["changed"] and liked["counts"]["likes"] == 1
    assert not api.put(f"/v1/posts/{p}/like", headers=ana.auth).json()["changed"]  # idempotent
    assert api.put(f"/v1/posts/{p}/save", headers=ana.auth).json()["counts"]["saves"] == 1
    comment = api.post(f"/v1/posts/{p}/comments", json={"text": " nice "}, headers=ana.auth)
    assert comment.status_code == 201 and comment.json()["text"] == "nice"
    assert api.post(f"/v1/posts/{p}/share", headers=ana.auth).status_code == 200
    counts = api.get(f"/v1/posts/{p}", headers=ana.auth).json()["counts"]
    assert counts == {"likes": 1, "comments": 1, "saves": 1}
    unliked = api.delete(f"/v1/posts/{p}/like", headers=ana.auth).json()
    assert unliked["counts"]["likes"] == 0
    comments = api.get(f"/v1/posts/{p}/comments", headers=ben.auth).json()
    assert [c["text"] for c in comments["items"]] == ["nice"]
    events = _events(backend)
    assert [e.kind for e in events] == ["like", "save", "comment", "share"]
    assert {(e.user_id, e.post_id, e.author_id) for e in events} == {(ana.id, p, ben.id)}
    assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_impressions_are_idempotent_by_event_id(api, backend) -> None:
    ana, ben = users(api, "ana", "ben")
    p1, p2 = post(api, ben, "a"), post(api, ben, "b")
    batch = {
        "events": [
            {"post_id": p1, "dwell_ms": 1200, "event_id": "client-evt-0001"},
            {"post_id": p2, "dwell_ms": 15000, "event_id": "client-evt-0002"},
            {"post_id": 999_999, "dwell_ms": 10, "event_id": "client-evt-0003"},
        ]
    }
    first = api.post("/v1/events/impressions", json=batch, headers=ana.auth).json()
    assert first == {"recorded": 2, "duplicates": 0, "skipped": 1}
    retry = api.post("/v1/events/impressions", json=batch, headers=ana.auth).json()
    assert retry == {"recorded": 0, "duplicates": 2, "skipped": 1}
    events = _events(backend)
    assert [(e.kind, e.post_id, e.dwell_ms) for e in events] == [
        ("impression", p1, 1200),
        ("impression", p2, 15000),
    ]


def test_bad_interactions(api) -> None:
    ana, ben = users(api, "ana", "ben")
    p = post(api, ben, "x")
    assert api.put("/v1/posts/999999/like", headers=ana.auth).status_code == 404
    empty = api.post(f"/v1/posts/{p}/comments", json={"text": "   "}, headers=ana.auth)
    assert empty.status_code == 400 and empty.json()["error"]["field"] == "text"
    bad = api.post(
        "/v1/events/impressions",
        json={"events": [{"post_id": p, "dwell_ms": -5}]},
        headers=ana.auth,
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "events[0].dwell_ms"
    for wrong in ({"dwell_ms": True}, {"dwell_ms": "5"}, {"dwell_ms": 1.5}):
        reply = api.post(
            "/v1/events/impressions",
            json={"events": [{"post_id": p, **wrong}]},
            headers=ana.auth,
        )
        assert reply.status_code == 422, wrong  # strict: a boolean is not a dwell time
    bad_id = api.post(
        "/v1/events/impressions",
        json={"events": [{"post_id": p, "event_id": "../../x"}]},
        headers=ana.auth,
    )
    assert bad_id.status_code == 422 and bad_id.json()["error"]["field"] == "events[0].event_id"
    assert (
        api.post("/v1/events/impressions", json={"events": []}, headers=ana.auth).status_code == 422
    )
    # blocked users cannot interact with each other's posts
    api.put(f"/v1/users/{ana.id}/block", headers=ben.auth)
    assert api.put(f"/v1/posts/{p}/like", headers=ana.auth).status_code == 404
