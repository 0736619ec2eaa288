"""Stories through the HTTP API: 24 h expiry at the exact boundary, tray order, view receipts,
viewers, and the cleanup job."""

from __future__ import annotations

from tests.serving.social.api.helpers import follow, jpeg, upload, users


def _ready_media(api, workers, account, color=(10, 20, 30)) -> int:
    reply = upload(api, account, jpeg(color=color))
    assert reply.status_code == 202, reply.text
    workers.drain()
    return reply.json()["id"]


def _story(api, workers, account, color=(10, 20, 30)) -> dict:
    media_id = _ready_media(api, workers, account, color)
    reply = api.post("/v1/stories", json={"media_id": media_id}, headers=account.auth)
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_story_expires_exactly_at_24_hours(api, workers, clock) -> None:
    ana, ben = users(api, "ana", "ben")
    follow(api, ana, ben)
    story = _story(api, workers, ben)
    assert story["expires_at"] == story["created_at"] + 86_400
    clock.advance(86_400 - 0.001)
    tray = api.get("/v1/stories/tray", headers=ana.auth).json()
    assert [s["id"] for s in tray["items"][0]["stories"]] == [story["id"]]
    assert api.get(f"/v1/stories/{story['id']}", headers=ana.auth).status_code == 200
    clock.advance(0.001)  # now == expires_at: gone, although the cleanup job has not run
    assert api.get("/v1/stories/tray", headers=ana.auth).json()["items"] == []
    assert api.get(f"/v1/stories/{story['id']}", headers=ana.auth).status_code == 404
    assert api.post(f"/v1/stories/{story['id']}/view", headers=ana.auth).status_code == 404
    assert api.get("/v1/stories/tray", headers=ben.auth).json()["own"] == []


def test_tray_unseen_first_then_latest(api, workers, clock) -> None:
    viewer, a, b, c = users(api, "viewer", "aaa", "bbb", "ccc")
    for author in (a, b, c):
        follow(api, viewer, author)
    stories = {}
    for author in (a, b, c):  # c posts last
        clock.advance(60)
        stories[author.username] = _story(api, workers, author, (author.id * 40 % 255, 1, 2))
    tray = api.get("/v1/stories/tray", headers=viewer.auth).json()["items"]
    assert [i["author"]["username"] for i in tray] == ["ccc", "bbb", "aaa"]
    # viewing c's story moves c behind the unseen ones
    view = api.post(f"/v1/stories/{stories['ccc']['id']}/view", headers=viewer.auth)
    assert view.json() == {"story_id": stories["ccc"]["id"], "new": True}
    tray = api.get("/v1/stories/tray", headers=viewer.auth).json()["items"]
    assert [(i["author"]["username"], i["has_unseen"]) for i in tray] == [
        ("bbb", True),
        ("aaa", True),
        ("ccc", False),
    ]
    # a non-follower neither sees the tray entry nor the story
    (stranger,) = users(api, "stranger")
    assert api.get("/v1/stories/tray", headers=stranger.auth).json()["items"] == []
    assert api.get(f"/v1/stories/{stories['aaa']['id']}", headers=stranger.auth).status_code == 404


def test_view_receipts_are_unique_and_only_the_author_sees_viewers(api, workers, clock) -> None:
    author, v1, v2 = users(api, "author", "vvv1", "vvv2")
    follow(api, v1, author)
    follow(api, v2, author)
    story = _story(api, workers, author)
    for viewer in (v1, v2, v1, v1):
        clock.advance(1)
        assert api.post(f"/v1/stories/{story['id']}/view", headers=viewer.auth).status_code == 200
    viewers = api.get(f"/v1/stories/{story['id']}/viewers", headers=author.auth).json()
    assert viewers["count"] == 2
    assert [v["username"] for v in viewers["viewers"]] == ["vvv1", "vvv2"]
    denied = api.get(f"/v1/stories/{story['id']}/viewers", headers=v1.auth)
    assert denied.status_code == 403
    clock.advance(86_400)  # the author still sees who viewed an expired story
    assert api.get(f"/v1/stories/{story['id']}/viewers", headers=author.auth).json()["count"] == 2


def test_cleanup_removes_expired_stories_and_marks_media(api, workers, backend, clock) -> None:
    ana, ben = users(api, "ana", "ben")
    follow(api, ana, ben)
    old = _story(api, workers, ben, (1, 2, 3))
    clock.advance(3_600)
    new = _story(api, workers, ben, (3, 2, 1))
    clock.advance(86_400 - 1_800)  # old expired, new still active
    assert backend.stories.cleanup() == 1
    assert backend.stories.cleanup() == 0  # idempotent
    now = clock.now()
    # asked as of a time when the old story was live, the cache no longer has it
    active = backend.storage.stories.active([ben.id], old["created_at"] + 1)
    assert [s[0] for s in active[ben.id]] == [new["id"]]
    with backend.storage.metadata.transaction() as tx:
        old_media = tx.get_media(old["media"]["id"])
        new_media = tx.get_media(new["media"]["id"])
    assert old_media.delete_after is not None and old_media.delete_after > now
    assert new_media.delete_after is None


def test_story_needs_own_ready_media(api, workers) -> None:
    ana, ben = users(api, "ana", "ben")
    media_id = _ready_media(api, workers, ben)
    stolen = api.post("/v1/stories", json={"media_id": media_id}, headers=ana.auth)
    assert stolen.status_code == 403
    missing = api.post("/v1/stories", json={"media_id": 999_999}, headers=ana.auth)
    assert missing.status_code == 404
    pending = upload(api, ana, jpeg(color=(9, 9, 9))).json()["id"]  # not processed yet
    early = api.post("/v1/stories", json={"media_id": pending}, headers=ana.auth)
    assert early.status_code == 409
