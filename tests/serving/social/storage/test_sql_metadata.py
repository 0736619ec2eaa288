"""SqlMetadataStore on SQLite and PostgreSQL: every MetadataTx method, transactions and the
outbox relay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.social.domain import Conflict, Event, InteractionEvent, Rendition
from serving.social.storage.sql import SqlMetadataStore
from serving.social.storage.sql.testing import fresh_engine

T0 = 1_767_225_600.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    engine = fresh_engine(request.param, tmp_path=tmp_path, url=url)
    store = SqlMetadataStore(engine)
    yield store
    store.close()


def _users(store: SqlMetadataStore, *names: str) -> list[int]:
    with store.transaction() as tx:
        return [tx.create_user(name, f"hash-{name}", T0).id for name in names]


# --- users and tokens ----------------------------------------------------------------------------


def test_users_create_get_credentials_touch(store: SqlMetadataStore) -> None:
    with store.transaction() as tx:
        alice = tx.create_user("alice", "h1", T0, country="DE", age_bucket="25-34")
        bob = tx.create_user("bob", "h2", T0 + 1)
    assert bob.id > alice.id
    assert (alice.username, alice.created_at, alice.last_active_at) == ("alice", T0, T0)
    with store.transaction() as tx:
        assert tx.get_user(alice.id) == alice
        assert tx.get_user(999_999) is None
        assert tx.get_users([alice.id, bob.id, 999_999, alice.id]) == {alice.id: alice, bob.id: bob}
        assert tx.get_users([]) == {}
        assert tx.user_credentials("alice") == (alice, "h1")
        assert tx.user_credentials("nobody") is None
        tx.touch_user(alice.id, T0 + 50)
    with store.transaction() as tx:
        assert tx.get_user(alice.id).last_active_at == T0 + 50  # type: ignore[union-attr]


def test_create_user_conflict_keeps_transaction_usable(store: SqlMetadataStore) -> None:
    _users(store, "alice")
    with store.transaction() as tx:
        with pytest.raises(Conflict) as raised:
            tx.create_user("alice", "other", T0)
        assert raised.value.field == "username"
        # the transaction is still alive (no IntegrityError aborted it on PostgreSQL)
        carol = tx.create_user("carol", "h", T0)
    with store.transaction() as tx:
        assert tx.get_user(carol.id) is not None
        assert tx.user_credentials("alice")[1] == "hash-alice"  # type: ignore[index]


def test_tokens(store: SqlMetadataStore) -> None:
    (uid,) = _users(store, "alice")
    with store.transaction() as tx:
        tx.add_token(uid, "tok", T0, T0 + 100)
    with store.transaction() as tx:
        assert tx.user_for_token("tok", T0 + 99.9) == uid
        assert tx.user_for_token("tok", T0 + 100) is None  # expired at the boundary
        assert tx.user_for_token("other", T0) is None
        assert tx.revoke_token("tok") is True
        assert tx.revoke_token("tok") is False
        assert tx.revoke_token("unknown") is False
        assert tx.user_for_token("tok", T0) is None


# --- graph ---------------------------------------------------------------------------------------


def test_follows(store: SqlMetadataStore) -> None:
    a, b, c, d = _users(store, "a_user", "b_user", "c_user", "d_user")
    with store.transaction() as tx:
        assert tx.add_follow(b, a, T0) is True
        assert tx.add_follow(b, a, T0) is False  # idempotent
        assert tx.add_follow(c, a, T0) is True
        assert tx.add_follow(d, a, T0) is True
        assert tx.add_follow(a, b, T0) is True
        tx.touch_user(c, T0 + 7)
    with store.transaction() as tx:
        assert tx.is_following(b, a) and not tx.is_following(a, c)
        assert tx.follower_count(a) == 3 and tx.followee_count(a) == 1
        assert tx.follower_counts([a, b, c, 12345]) == {a: 3, b: 1, c: 0, 12345: 0}
        assert tx.followers_page(a, 0, 10) == [(b, T0), (c, T0 + 7), (d, T0)]
        assert tx.followers_page(a, 0, 2) == [(b, T0), (c, T0 + 7)]
        assert tx.followers_page(a, c, 2) == [(d, T0)]
        assert tx.followers_page(a, d, 2) == []
        assert tx.followees(b) == [a]
        assert tx.remove_follow(b, a) is True
        assert tx.remove_follow(b, a) is False
        assert tx.followees(b) == []


def test_follow_log_keeps_every_change_in_order(store: SqlMetadataStore) -> None:
    a, b = _users(store, "a_user", "b_user")
    with store.transaction() as tx:
        assert tx.add_follow(a, b, T0)
        assert not tx.add_follow(a, b, T0 + 1)  # no change, not logged
        assert tx.remove_follow(a, b, T0 + 5)
        assert not tx.remove_follow(a, b, T0 + 6)
        assert tx.add_follow(a, b, T0 + 5)  # refollow in the same second
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.remove_follow(a, b, T0 + 9)
        raise RuntimeError("rolled back: the log with it")
    batches = list(store.iter_follow_log(batch=2))
    changes = [c for batch in batches for c in batch]
    assert [len(b) for b in batches] == [2, 1]
    assert [(c.follower_id, c.followee_id, c.following, c.ts) for c in changes] == [
        (a, b, True, T0),
        (a, b, False, T0 + 5),
        (a, b, True, T0 + 5),
    ]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert [c.following for b in store.iter_follow_log(after_seq=changes[0].seq) for c in b] == [
        False,
        True,
    ]


def test_blocks(store: SqlMetadataStore) -> None:
    a, b, c = _users(store, "a_user", "b_user", "c_user")
    with store.transaction() as tx:
        assert tx.add_block(a, b, T0) is True
        assert tx.add_block(a, b, T0) is False
        assert tx.add_block(c, a, T0) is True
    with store.transaction() as tx:
        assert tx.blocked_either_way(a) == {b, c}
        assert tx.blocked_either_way(b) == {a}
        assert tx.remove_block(a, b) is True
        assert tx.remove_block(a, b) is False
        assert tx.blocked_either_way(b) == set()


# --- posts ---------------------------------------------------------------------------------------


def test_posts_create_get_delete(store: SqlMetadataStore) -> None:
    (a,) = _users(store, "alice")
    with store.transaction() as tx:
        m = tx.create_media(a, "image", "image/jpeg", "rawkey", T0)
        p1 = tx.create_post(a, T0, caption="hi", topic="cats")
        p2 = tx.create_post(a, T0 + 1, media_id=m.id, media_type="image")
    assert p2.id > p1.id
    assert (p1.caption, p1.topic, p1.media_type, p1.media_id) == ("hi", "cats", "text", None)
    with store.transaction() as tx:
        assert tx.get_post(p1.id) == p1
        assert tx.get_post(p2.id).media_id == m.id  # type: ignore[union-attr]
        assert tx.get_posts([p1.id, p2.id, 777]) == {p1.id: p1, p2.id: p2}
        assert tx.delete_post(p1.id, T0 + 5) is True
        assert tx.delete_post(p1.id, T0 + 6) is False
        assert tx.delete_post(777, T0) is False
        assert tx.get_post(p1.id) is None
        assert tx.get_post(p1.id, include_deleted=True).deleted_at == T0 + 5  # type: ignore[union-attr]
        assert tx.get_posts([p1.id, p2.id]) == {p2.id: p2}


def test_recent_posts_per_author_newest_first(store: SqlMetadataStore) -> None:
    a, b, c = _users(store, "a_user", "b_user", "c_user")
    ids: dict[int, list[int]] = {a: [], b: [], c: []}
    with store.transaction() as tx:
        for i in range(12):
            author = (a, b, a, c)[i % 4]
            ids[author].append(tx.create_post(author, T0 + i).id)
        tx.delete_post(ids[a][-1], T0 + 100)
    live_a = ids[a][:-1]
    with store.transaction() as tx:
        got = tx.recent_posts([a, b, c], 2)
        expected = sorted(live_a[-2:] + ids[b][-2:] + ids[c][-2:], reverse=True)
        assert [p.id for p in got] == expected
        before = ids[b][-1]
        got = tx.recent_posts([a, b], 2, before_id=before)
        newer_a = [i for i in live_a if i < before][-2:]
        newer_b = [i for i in ids[b] if i < before][-2:]
        assert [p.id for p in got] == sorted(newer_a + newer_b, reverse=True)
        assert tx.recent_posts([], 5) == []
        assert tx.recent_posts([a], 0) == []
        assert tx.recent_posts([99_999], 5) == []


# --- media ---------------------------------------------------------------------------------------


def test_media(store: SqlMetadataStore) -> None:
    (a,) = _users(store, "alice")
    renditions = (
        Rendition("1440", "k1", "image/jpeg", 1440, 960, 12345),
        Rendition("250", "k2", "image/jpeg", 250, 167, 2345),
    )
    with store.transaction() as tx:
        m = tx.create_media(a, "image", "image/heic", "raw", T0)
        v = tx.create_media(a, "video", "video/mp4", None, T0)
    assert (m.status, m.renditions, m.raw_key, v.raw_key) == ("processing", (), "raw", None)
    with store.transaction() as tx:
        tx.update_media(
            m.id, "ready", T0 + 3, width=4000, height=3000, thumbhash="dGg=", renditions=renditions
        )
        tx.update_media(v.id, "failed", T0 + 4, reason="too long")
    with store.transaction() as tx:
        got = tx.get_media(m.id)
        assert got is not None and got.status == "ready" and got.updated_at == T0 + 3
        assert (got.width, got.height, got.thumbhash, got.renditions) == (
            4000,
            3000,
            "dGg=",
            renditions,
        )
        assert tx.get_media(v.id).reason == "too long"  # type: ignore[union-attr]
        assert tx.get_media(424242) is None
        assert set(tx.get_media_many([m.id, v.id, 424242])) == {m.id, v.id}
        tx.mark_media_for_deletion([m.id], T0 + 1000)
        tx.update_media(m.id, "deleted", T0 + 5)
    with store.transaction() as tx:
        got = tx.get_media(m.id)
        assert got is not None and got.delete_after == T0 + 1000 and got.status == "deleted"
        assert got.renditions == renditions  # kept: only given fields change
        assert tx.get_media(v.id).delete_after is None  # type: ignore[union-attr]


# --- stories -------------------------------------------------------------------------------------


def test_stories_active_boundary_and_cleanup(store: SqlMetadataStore) -> None:
    a, b, viewer = _users(store, "a_user", "b_user", "viewer")
    with store.transaction() as tx:
        m = tx.create_media(a, "image", "image/jpeg", None, T0)
        s1 = tx.create_story(a, m.id, T0, T0 + 100)
        s2 = tx.create_story(b, m.id, T0 + 10, T0 + 110)
        s3 = tx.create_story(a, m.id, T0 + 20, T0 + 120)
    with store.transaction() as tx:
        assert tx.get_story(s1.id) == s1
        assert tx.get_story(9999) is None
        assert [s.id for s in tx.active_stories([a, b], T0 + 50)] == [s1.id, s2.id, s3.id]
        assert [s.id for s in tx.active_stories([a], T0 + 50)] == [s1.id, s3.id]
        # strictly expires_at > now: at the exact expiry the story is gone
        assert [s.id for s in tx.active_stories([a, b], T0 + 99.999)] == [s1.id, s2.id, s3.id]
        assert [s.id for s in tx.active_stories([a, b], T0 + 100)] == [s2.id, s3.id]
        assert tx.active_stories([], T0) == []
        assert tx.expired_uncleaned_stories(T0 + 99.999, 10) == []
        assert [s.id for s in tx.expired_uncleaned_stories(T0 + 110, 10)] == [s1.id, s2.id]
        assert [s.id for s in tx.expired_uncleaned_stories(T0 + 110, 1)] == [s1.id]
        tx.mark_stories_cleaned([s1.id], T0 + 111)
        assert [s.id for s in tx.expired_uncleaned_stories(T0 + 200, 10)] == [s2.id, s3.id]
        # views
        assert tx.record_story_view(s3.id, viewer, T0 + 30) is True
        assert tx.record_story_view(s3.id, viewer, T0 + 31) is False
        assert tx.record_story_view(s3.id, b, T0 + 25) is True
        assert tx.story_viewers(s3.id) == [(b, T0 + 25), (viewer, T0 + 30)]
        assert tx.seen_stories(viewer, [s1.id, s2.id, s3.id]) == {s3.id}
        assert tx.seen_stories(viewer, []) == set()


# --- interactions --------------------------------------------------------------------------------


def test_likes_saves_comments_counts(store: SqlMetadataStore) -> None:
    a, b = _users(store, "a_user", "b_user")
    with store.transaction() as tx:
        p = tx.create_post(a, T0)
        q = tx.create_post(a, T0)
        assert tx.add_like(b, p.id, T0) is True
        assert tx.add_like(b, p.id, T0) is False
        assert tx.add_like(a, p.id, T0) is True
        assert tx.add_save(b, p.id, T0) is True
        assert tx.add_save(b, p.id, T0) is False
        c1 = tx.add_comment(b, p.id, "first", T0 + 1)
        c2 = tx.add_comment(a, p.id, "second", T0 + 2)
        c3 = tx.add_comment(b, p.id, "third", T0 + 3)
    assert c1.id < c2.id < c3.id and c1.text == "first"
    with store.transaction() as tx:
        assert tx.post_counts([p.id, q.id]) == {
            p.id: {"likes": 2, "comments": 3, "saves": 1},
            q.id: {"likes": 0, "comments": 0, "saves": 0},
        }
        assert tx.comments(p.id, 0, 2) == [c1, c2]
        assert tx.comments(p.id, c2.id, 10) == [c3]
        assert tx.comments(q.id, 0, 10) == []
        assert tx.remove_like(b, p.id) is True
        assert tx.remove_like(b, p.id) is False
        assert tx.remove_save(b, p.id) is True
        assert tx.remove_save(b, p.id) is False
        assert tx.post_counts([p.id])[p.id] == {"likes": 1, "comments": 3, "saves": 0}


def test_append_and_iter_events(store: SqlMetadataStore) -> None:
    def ev(i: int, kind: str = "impression") -> InteractionEvent:
        dwell = 1200 if kind == "impression" else None
        return InteractionEvent(f"e{i}", kind, 1, 100 + i, 7, T0 + i, dwell_ms=dwell)  # type: ignore[arg-type]

    with store.transaction() as tx:
        assert tx.append_events([ev(1), ev(2, "like"), ev(3)]) == 3
        assert tx.append_events([ev(2, "like"), ev(4), ev(4)]) == 1  # dupes skipped
        assert tx.append_events([]) == 0
    batches = list(store.iter_events(batch=3))
    assert [len(b) for b in batches] == [3, 1]
    flat = [e for batch in batches for e in batch]
    assert [e.event_id for e in flat] == ["e1", "e2", "e3", "e4"]
    seqs = [e.seq for e in flat]
    assert seqs == sorted(seqs) and None not in seqs
    assert flat[1].kind == "like" and flat[1].dwell_ms is None and flat[0].dwell_ms == 1200
    assert [e.event_id for b in store.iter_events(after_seq=seqs[1]) for e in b] == ["e3", "e4"]


# --- transactions and the outbox -----------------------------------------------------------------


def test_rollback_on_exception(store: SqlMetadataStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
        tx.create_user("ghost", "h", T0)
        tx.add_outbox(Event("graph", "user.created", {"x": 1}, T0))
        raise RuntimeError("boom")
    with store.transaction() as tx:
        assert tx.user_credentials("ghost") is None
    published: list[Event] = []
    assert store.relay_outbox(published.append) == 0 and published == []


def test_outbox_relay_order_and_at_least_once(store: SqlMetadataStore) -> None:
    events = [Event("posts", "post.created", {"post": i}, T0 + i) for i in range(6)]
    with store.transaction() as tx:
        for e in events[:3]:
            tx.add_outbox(e)
    with store.transaction() as tx:
        for e in events[3:]:
            tx.add_outbox(e)

    published: list[Event] = []

    def flaky(event: Event) -> None:
        if event.payload["post"] == 2 and not any(p.payload["post"] == 2 for p in published):
            published.append(event)  # delivered, but the publisher fails afterwards
            raise ConnectionError("bus down")
        published.append(event)

    with pytest.raises(ConnectionError):
        store.relay_outbox(flaky)
    assert [p.payload["post"] for p in published] == [0, 1, 2]
    # 0 and 1 were marked; 2 (whose publish raised) onwards are relayed again, in order
    assert store.relay_outbox(flaky, limit=2) == 2
    assert store.relay_outbox(flaky) == 2
    assert store.relay_outbox(flaky) == 0
    assert [p.payload["post"] for p in published] == [0, 1, 2, 2, 3, 4, 5]
    assert published[0] == events[0]  # the event round-trips intact (id, ts, payload)
    with store.transaction() as tx:
        tx.add_outbox(Event("posts", "post.created", {"post": 6}, T0))
    assert store.purge_outbox(published_before=time.time() + 1) == 6
    assert store.relay_outbox(published.append) == 1  # the unpublished one survived the purge


def test_outbox_concurrent_relays_publish_each_once(store: SqlMetadataStore) -> None:
    with store.transaction() as tx:
        for i in range(200):
            tx.add_outbox(Event("graph", "follow.created", {"i": i}, T0))
    seen: list[int] = []
    lock = threading.Lock()

    def publish(event: Event) -> None:
        with lock:
            seen.append(event.payload["i"])

    def relay() -> None:
        while store.relay_outbox(publish, limit=7):
            pass

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(200))


def test_check_and_close(store: SqlMetadataStore, tmp_path: Path) -> None:
    store.check()
    from serving.social.storage.sql import make_engine

    blank = SqlMetadataStore(make_engine(f"sqlite:///{tmp_path / 'blank.db'}"))
    with pytest.raises(RuntimeError, match="revision"):
        blank.check()
    blank.close()
    down = SqlMetadataStore(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    with pytest.raises(RuntimeError, match="unreachable"):
        down.check()
    down.close()


def test_reading_sees_commits_and_does_not_block_writers(store: SqlMetadataStore) -> None:
    (ana,) = _users(store, "ana")
    with store.transaction() as tx:
        post = tx.create_post(ana, 1.0, caption="first")
    with store.reading() as reader:
        assert reader.get_posts([post.id])[post.id].caption == "first"
        done = threading.Event()

        def write() -> None:  # a writer on another connection while the reader is open
            with store.transaction() as tx:
                tx.create_post(ana, 2.0, caption="second")
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert done.wait(10), "a writer waited on an open reader"
        thread.join()
    with store.reading() as reader:
        assert [p.caption for p in reader.recent_posts([ana], 10)] == ["second", "first"]
