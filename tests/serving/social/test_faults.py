"""Property and fault tests of fanout and the outbox on both storage configurations:
re-delivery makes no duplicates, a worker killed mid-stream loses nothing, a crash between the
write and the publish loses nothing."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.social.backend import open_backend
from serving.social.domain import Event
from serving.social.workers import Workers

REPO = Path(__file__).resolve().parents[3]


def _users(backend, n: int) -> list[int]:
    """n users straight through the store (no password hashing: fast)."""
    tag = uuid.uuid4().hex[:8]
    now = backend.ctx.clock.now()
    with backend.storage.metadata.transaction() as tx:
        return [tx.create_user(f"u{i}_{tag}", "unused", now).id for i in range(n)]


def _expected_timeline(backend, user: int) -> set[int]:
    """What a fully fanned-out timeline must hold: live posts by pushed followees and self."""
    threshold = backend.settings.fanout.threshold
    with backend.storage.metadata.transaction() as tx:
        followees = tx.followees(user)
        counts = tx.follower_counts(followees)
        authors = [f for f in followees if counts[f] < threshold] + [user]
        return {p.id for p in tx.recent_posts(authors, 10_000)}


OPS = st.lists(
    st.tuples(
        st.sampled_from(["follow", "unfollow", "post", "delete", "block"]),
        st.integers(0, 4),
        st.integers(0, 4),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, replay_seed=st.randoms(use_true_random=False))
def test_fanout_is_idempotent_under_redelivery(backend, ops, replay_seed) -> None:
    ids = _users(backend, 5)
    for user in ids:
        backend.feed.rebuild(user)  # every timeline built (empty)
    posts: list[int] = []
    for op, a, b in ops:
        ua, ub = ids[a], ids[b]
        try:
            if op == "follow" and ua != ub:
                backend.accounts.follow(ua, ub)
            elif op == "unfollow":
                backend.accounts.unfollow(ua, ub)
            elif op == "block" and ua != ub:
                backend.accounts.block(ua, ub)
            elif op == "post":
                posts.append(backend.posts.create(ua, f"post by {a}")["id"])
            elif op == "delete" and posts:
                post = posts[b % len(posts)]
                with backend.storage.metadata.transaction() as tx:
                    author = tx.get_post(post, include_deleted=True).author_id
                backend.posts.delete(author, post)
        except Exception as error:  # follow after a block (409), a deleted post again (404)
            assert getattr(error, "status", None) in (404, 409), error
    workers = Workers(backend, consumer="w1")
    workers.drain()
    once = {u: backend.storage.timelines.page(u, 1_000) for u in ids}
    for u in ids:
        assert set(once[u]) == _expected_timeline(backend, u), u
        assert len(once[u]) == len(set(once[u]))
    # Re-deliver every event again, shuffled and some twice: nothing changes.
    bus = backend.storage.bus
    replay: list[Event] = []
    for stream in ("posts", "graph"):
        group = f"replay-{uuid.uuid4().hex[:6]}"
        bus.ensure_group(stream, group)
        while batch := bus.read(stream, group, "replayer", 500):
            replay += [m.event for m in batch]
            bus.ack(stream, group, [m.id for m in batch])
    mine = {str(u) for u in ids}
    replay = [e for e in replay if mine & {str(v) for v in e.payload.values()}]
    replay = replay + replay_seed.sample(replay, len(replay) // 2)
    replay_seed.shuffle(replay)
    for event in replay:
        backend.fanout.handle(event)
    again = {u: backend.storage.timelines.page(u, 1_000) for u in ids}
    assert again == once


def _make_posts(backend, n_followers: int, n_posts: int) -> tuple[int, list[int], list[int]]:
    author, *followers = _users(backend, n_followers + 1)
    for f in followers:
        backend.feed.rebuild(f)
        backend.accounts.follow(f, author)
    posts = [backend.posts.create(author, f"p{i}")["id"] for i in range(n_posts)]
    return author, followers, posts


def test_worker_dying_mid_batch_loses_nothing(backend) -> None:
    _author, followers, posts = _make_posts(backend, n_followers=2, n_posts=10)
    doomed = Workers(backend, consumer="doomed", batch=100)
    doomed.relay()
    bus = backend.storage.bus
    taken = bus.read("posts", "fanout", "doomed", 100)
    assert len(taken) == 10
    for message in taken[:4]:  # handled four, then died before acking anything
        backend.fanout.handle(message.event)
    assert bus.pending_count("posts", "fanout") == 10
    rescuer = Workers(backend, consumer="rescuer", reclaim_idle_ms=0)
    rescuer.drain()
    assert bus.pending_count("posts", "fanout") == 0
    for f in followers:
        assert backend.storage.timelines.page(f, 100) == posts[::-1]


def test_worker_process_killed_then_restarted(backend, backend_settings, clock, tmp_path) -> None:
    """A real worker process handles part of a batch and is killed (os._exit, no cleanup,
    nothing acked); a restarted worker reclaims the rest: nothing lost, nothing doubled."""
    _author, followers, posts = _make_posts(backend, n_followers=2, n_posts=12)  # < threshold 3
    settings_file = tmp_path / "settings.json"
    import dataclasses

    settings_file.write_text(json.dumps(dataclasses.asdict(backend_settings)))
    script = f"""
import json, os, sys
sys.path.insert(0, {str(REPO)!r})
from serving.social.backend import open_backend
from serving.social.clock import ManualClock
from serving.social.settings import settings_from_mapping
from serving.social.workers import Workers
backend = open_backend(settings_from_mapping(json.load(open({str(settings_file)!r}))),
                       ManualClock({clock.now()!r}))
handled = 0
original = backend.fanout.handle
def dying(event):
    global handled
    original(event)
    handled += event.kind == "post.created"
    if handled == 5:
        os._exit(9)   # killed mid-batch: 5 posts handled, the batch not acked
backend.fanout.handle = dying
Workers(backend, consumer="victim").drain()
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 9, run.stderr
    bus = backend.storage.bus
    assert bus.pending_count("posts", "fanout") > 0  # the victim died holding messages
    restarted = Workers(
        open_backend(backend_settings, clock), consumer="restarted", reclaim_idle_ms=0
    )
    restarted.drain()
    restarted.backend.close()
    assert bus.pending_count("posts", "fanout") == 0
    for f in followers:
        assert backend.storage.timelines.page(f, 100) == posts[::-1]


def test_crash_between_write_and_publish_loses_nothing(backend, backend_settings, clock) -> None:
    author, followers, _ = _make_posts(backend, n_followers=2, n_posts=0)
    Workers(backend).drain()
    made = [backend.posts.create(author, f"p{i}")["id"] for i in range(5)]
    calls = []

    def flaky(event: Event) -> str:
        calls.append(event.id)
        if len(calls) == 3:
            raise ConnectionError("bus went away mid-relay")
        return backend.storage.bus.publish(event)

    with contextlib.suppress(ConnectionError):
        backend.storage.metadata.relay_outbox(flaky)
    # the process "restarts": a new backend over the same storage relays what is left
    restarted = open_backend(backend_settings, clock)
    Workers(restarted, consumer="after-crash", reclaim_idle_ms=0).drain()
    restarted.close()
    for f in followers:
        assert backend.storage.timelines.page(f, 100) == made[::-1]


def test_poison_message_is_given_up_after_max_deliveries(backend) -> None:
    (user,) = _users(backend, 1)
    media = None
    with backend.storage.metadata.transaction() as tx:
        media = tx.create_media(user, "image", "image/jpeg", None, backend.ctx.clock.now())
        tx.add_outbox(Event("media", "media.uploaded", {"media_id": media.id}, ts=0.0))

    def broken(event: Event) -> None:
        raise RuntimeError("disk on fire")

    workers = Workers(backend, consumer="w", max_deliveries=3)
    workers.groups = [
        g if g.name != "media" else type(g)(g.name, g.streams, broken, g.on_dead)
        for g in workers.groups
    ]
    workers.drain()
    assert backend.storage.bus.pending_count("media", "media") == 0
    with backend.storage.metadata.transaction() as tx:
        failed = tx.get_media(media.id)
    assert failed.status == "failed" and "disk on fire" in failed.reason
