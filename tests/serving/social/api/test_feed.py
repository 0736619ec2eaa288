"""Feed and fanout through the HTTP API, on embedded and production storage (threshold: 3)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.social.api import create_app
from serving.social.workers import Workers
from tests.serving.social.api.helpers import feed_ids, follow, login, post, users


def test_pushed_and_pulled_posts_merge_newest_first(api, workers, backend, clock) -> None:
    ana, ben, cam, dee, star = users(api, "ana", "ben", "cam", "dee", "star")
    for fan in (ana, ben, cam):
        follow(api, fan, star)  # 3 followers = threshold: star is pulled at read time
    follow(api, ana, ben)
    follow(api, ana, dee)
    workers.drain()
    expected = []
    for author in (ben, star, dee, star, ben):
        clock.advance(1)
        expected.append(post(api, author, f"by {author.username}"))
    workers.drain()
    assert feed_ids(api, ana) == expected[::-1]
    # star's posts were pushed to nobody but star; ben's went to ana's timeline
    timelines = backend.storage.timelines
    assert set(timelines.page(ana.id, 100)) == {expected[0], expected[2], expected[4]}
    assert set(timelines.page(star.id, 100)) == {expected[1], expected[3]}
    # authors see their own posts too; a non-follower sees nothing of theirs
    assert feed_ids(api, star) == [expected[3], expected[1]]
    assert feed_ids(api, cam) == [expected[3], expected[1]]


def test_cursor_is_stable_while_new_posts_arrive(api, workers, clock) -> None:
    ana, ben, star, x, y = users(api, "ana", "ben", "star", "xxx", "yyy")
    follow(api, ana, ben)
    for fan in (ana, x, y):
        follow(api, fan, star)
    workers.drain()
    made = []
    for i in range(25):
        clock.advance(1)
        made.append(post(api, ben if i % 3 else star, f"p{i}"))
    workers.drain()
    first = api.get("/v1/feed", params={"limit": 10}, headers=ana.auth).json()
    # new posts arrive between pages: later pages continue where the first stopped
    post(api, ben, "late")
    post(api, star, "late star")
    workers.drain()
    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/v1/feed", params={"limit": 10, "cursor": cursor}, headers=ana.auth)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    assert seen == made[::-1]
    assert len(set(seen)) == len(seen)


def test_follow_backfills_and_unfollow_removes(api, workers, backend) -> None:
    ana, ben = users(api, "ana", "ben")
    assert feed_ids(api, ana) == []  # builds ana's (empty) timeline
    older = [post(api, ben, f"old {i}") for i in range(3)]
    workers.drain()
    follow(api, ana, ben)
    workers.drain()
    assert backend.storage.timelines.page(ana.id, 10) == older[::-1]  # backfilled by fanout
    assert feed_ids(api, ana) == older[::-1]
    api.delete(f"/v1/users/{ben.id}/follow", headers=ana.auth)
    workers.drain()
    assert backend.storage.timelines.page(ana.id, 10) == []
    assert feed_ids(api, ana) == []


def test_block_removes_both_ways_and_hides_posts(api, workers) -> None:
    ana, ben = users(api, "ana", "ben")
    follow(api, ana, ben)
    follow(api, ben, ana)
    workers.drain()
    p_ben, p_ana = post(api, ben), post(api, ana)
    workers.drain()
    assert feed_ids(api, ana) == [p_ana, p_ben]
    assert api.put(f"/v1/users/{ben.id}/block", headers=ana.auth).status_code == 200
    workers.drain()
    assert feed_ids(api, ana) == [p_ana]
    assert feed_ids(api, ben) == [p_ben]
    assert api.get(f"/v1/posts/{p_ana}", headers=ben.auth).status_code == 404
    refollow = api.put(f"/v1/users/{ana.id}/follow", headers=ben.auth)
    assert refollow.status_code == 409


def test_delete_removes_everywhere_even_before_fanout(api, workers, backend) -> None:
    ana, ben, cam = users(api, "ana", "ben", "cam")
    follow(api, ana, ben)
    follow(api, cam, ben)
    workers.drain()
    keep, gone = post(api, ben, "keep"), post(api, ben, "gone")
    workers.drain()
    assert api.delete(f"/v1/posts/{gone}", headers=ben.auth).status_code == 204
    # the read-time filter hides it at once, before the worker has removed it
    assert feed_ids(api, ana) == [keep]
    workers.drain()
    for owner in (ana, ben, cam):
        assert gone not in backend.storage.timelines.page(owner.id, 10)
    assert api.get(f"/v1/posts/{gone}", headers=ana.auth).status_code == 404


def test_inactive_users_get_no_pushes_and_are_rebuilt_on_read(api, workers, backend, clock):
    ana, ben = users(api, "ana", "ben")
    follow(api, ana, ben)
    workers.drain()
    assert feed_ids(api, ana) == []
    clock.advance(31 * 86_400)  # ana idle past inactive_after_days (30)
    ben = login(api, ben)  # tokens last 30 days too
    p = post(api, ben, "while you were away")
    workers.drain()
    assert backend.storage.timelines.page(ana.id, 10) == []
    assert not backend.storage.timelines.is_built(ana.id)
    ana = login(api, ana)
    assert feed_ids(api, ana) == [p]  # rebuilt from the database on this read
    assert backend.storage.timelines.page(ana.id, 10) == [p]
    p2 = post(api, ben, "now pushed again")
    workers.drain()
    assert backend.storage.timelines.page(ana.id, 10) == [p2, p]


def test_timeline_is_capped(make_backend) -> None:
    backend = make_backend({"fanout": {"timeline_cap": 5}})
    workers = Workers(backend)
    with TestClient(create_app(backend=backend, start_workers=False)) as api:
        ana, ben = users(api, "ana", "ben")
        follow(api, ana, ben)
        workers.drain()
        feed_ids(api, ana)
        made = [post(api, ben, f"p{i}") for i in range(8)]
        workers.drain()
        workers.drain()  # a re-run changes nothing
        assert backend.storage.timelines.page(ana.id, 100) == made[::-1][:5]
        assert feed_ids(api, ana, limit=50) == made[::-1][:5]


def test_bad_feed_requests(api) -> None:
    (ana,) = users(api, "ana")
    assert api.get("/v1/feed").status_code == 401
    bad = api.get("/v1/feed", params={"cursor": "zzz"}, headers=ana.auth)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"
    assert api.get("/v1/feed", params={"limit": 0}, headers=ana.auth).status_code == 422
    too_many = api.get("/v1/feed", params={"limit": 1000}, headers=ana.auth)
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "limit"
