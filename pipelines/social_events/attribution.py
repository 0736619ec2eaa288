"""Impressions and actions of the backend's event log turned into labelled feature rows.

Two passes over the log (:meth:`MetadataStore.iter_events
<serving.social.storage.interfaces.MetadataStore.iter_events>`):

1. :func:`count_pass` - impressions per user (for ``user_activity``), the last ``seq`` (so a
   log that grows meanwhile still exports one consistent range) and the events per kind.
2. :func:`attribute` - each like, comment, share and save is credited to the user's latest
   earlier impression of the post within the attribution window; an impression is turned into
   a row (:func:`feature_frame`) once the window has closed, i.e. once an event at least
   ``window + lateness`` later was read, and handed to ``emit`` in ``(ts, seq)`` order.

Features come from the metadata store's posts, users and follow graph (:class:`Lookups`) in
the columns and dtypes of :data:`SCHEMA`.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.data.synthetic.schema import (
    ACTIVITY_LEVELS,
    ACTIVITY_QUANTILES,
    SOCIAL_SCHEMA,
    column_dtypes,
)
from serving.social.domain import InteractionEvent, Post, User
from serving.social.storage.interfaces import MetadataStore, MetadataTx

ACTIONS = ("like", "comment", "share", "save")
LABELS = SOCIAL_SCHEMA.labels
SCHEMA: dict[str, pl.DataType] = column_dtypes(truth=False)
"""Output columns in order and their dtypes (those of :class:`recsys.data.synthetic.SocialSource`
less the aux truth columns)."""


@dataclass
class AttributionStats:
    """What pass 2 counted besides the rows.

    Attributes:
        unattributed_actions: actions with no impression of the post by the user in the
            attribution window before them (these are not rows).
        immature_rows: rows whose attribution window runs past the last event read.
        out_of_order_rows: rows logged more than the allowed lateness after a later one.
        missing_posts: posts the metadata store does not know (their features are null).
    """

    unattributed_actions: int = 0
    immature_rows: int = 0
    out_of_order_rows: int = 0
    missing_posts: int = 0


class Impression:
    """One impression waiting for its attribution window to close."""

    __slots__ = ("author", "dwell_ms", "key", "labels", "post", "seq", "ts", "user")

    def __init__(self, event: InteractionEvent, seq: int) -> None:
        self.ts = float(event.ts)
        self.seq = seq
        self.user = int(event.user_id)
        self.post = int(event.post_id)
        self.author = int(event.author_id)
        self.dwell_ms = event.dwell_ms
        self.labels: set[str] = set()
        self.key = (self.ts, seq)


class Lookups:
    """Caches of what the metadata store knows about the users, posts and authors met."""

    def __init__(self) -> None:
        self.posts: dict[int, Post | None] = {}
        self.users: dict[int, User | None] = {}
        self.followers: dict[int, int] = {}
        self.followees: dict[int, frozenset[int]] = {}
        self.missing_posts = 0

    def load(self, tx: MetadataTx, rows: Sequence[Impression]) -> None:
        """Fetches the posts, users (with their followees) and authors of ``rows`` not cached."""
        posts = sorted({r.post for r in rows} - self.posts.keys())
        if posts:
            found = tx.get_posts(posts)
            for pid in posts:
                post = found.get(pid) or tx.get_post(pid, include_deleted=True)
                self.missing_posts += post is None
                self.posts[pid] = post
        users = sorted({r.user for r in rows} - self.users.keys())
        if users:
            found_users = tx.get_users(users)
            for uid in users:
                self.users[uid] = found_users.get(uid)
                self.followees[uid] = frozenset(tx.followees(uid))
        authors = sorted({r.author for r in rows} - self.followers.keys())
        if authors:
            self.followers.update(tx.follower_counts(authors))


def activity_thresholds(counts: Mapping[int, int]) -> tuple[float, float] | None:
    """The impression counts splitting low / medium / high activity (None without users)."""
    if not counts:
        return None
    q = np.quantile(np.fromiter(counts.values(), dtype=np.float64), ACTIVITY_QUANTILES)
    return float(q[0]), float(q[1])


def activity_level(count: int, thresholds: tuple[float, float] | None) -> str | None:
    """The ``user_activity`` of a user with ``count`` impressions."""
    if thresholds is None:
        return None
    return ACTIVITY_LEVELS[int(np.searchsorted(np.asarray(thresholds), count, side="left"))]


def _text(value: str | None) -> str | None:
    return value if value else None


def feature_frame(
    rows: Sequence[Impression],
    lookups: Lookups,
    activity: Mapping[int, str | None],
    long_dwell_ms: int,
) -> pl.DataFrame:
    """The output rows for ``rows`` (features from the caches, which must hold them)."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA}
    for r in rows:
        post, user = lookups.posts[r.post], lookups.users[r.user]
        for task in ACTIONS:
            cols[task].append(1.0 if task in r.labels else 0.0)
        dwell = r.dwell_ms if r.dwell_ms is not None else 0
        cols["long_dwell"].append(1.0 if dwell >= long_dwell_ms else 0.0)
        cols["post_age_hours"].append(
            (r.ts - post.created_at) / 3600.0 if post is not None else None
        )
        cols["author_followers_log"].append(math.log1p(lookups.followers.get(r.author, 0)))
        followees = lookups.followees[r.user]
        cols["user_follow_count_log"].append(math.log1p(len(followees)))
        cols["post_length"].append(float(len(post.caption)) if post is not None else None)
        cols["user_id"].append(str(r.user))
        cols["post_id"].append(str(r.post))
        cols["author_id"].append(str(r.author))
        cols["topic"].append(_text(post.topic) if post is not None else None)
        cols["media_type"].append(_text(post.media_type) if post is not None else None)
        cols["country"].append(_text(user.country) if user is not None else None)
        cols["age_bucket"].append(_text(user.age_bucket) if user is not None else None)
        cols["user_activity"].append(activity.get(r.user))
        cols["is_following"].append("1" if r.author in followees else "0")
        cols["timestamp"].append(math.floor(r.ts))
    return pl.DataFrame(cols, schema=SCHEMA)


def _seq(event: InteractionEvent, fallback: int) -> int:
    return int(event.seq) if event.seq is not None else fallback


def count_pass(
    metadata: MetadataStore, after_seq: int, batch: int
) -> tuple[Counter[int], int, Counter[str]]:
    """Pass 1: impressions per user, the last seq, and events per kind."""
    per_user: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    last_seq = after_seq
    for events in metadata.iter_events(after_seq=after_seq, batch=batch):
        for e in events:
            kinds[e.kind] += 1
            if e.kind == "impression":
                per_user[int(e.user_id)] += 1
        if events:
            last_seq = max(last_seq, _seq(events[-1], last_seq))
    return per_user, last_seq, kinds


def _events_upto(
    metadata: MetadataStore, after_seq: int, last_seq: int, batch: int
) -> Iterator[list[InteractionEvent]]:
    """The log's batches with ``after_seq < seq <= last_seq``."""
    if last_seq <= after_seq:
        return
    for events in metadata.iter_events(after_seq=after_seq, batch=batch):
        kept = [e for e in events if e.seq is None or e.seq <= last_seq]
        if kept:
            yield kept
        if len(kept) < len(events) or (events and _seq(events[-1], 0) >= last_seq):
            return


def attribute(
    metadata: MetadataStore,
    emit: Callable[[pl.DataFrame], None],
    activity: Mapping[int, str | None],
    *,
    after_seq: int,
    last_seq: int,
    read_batch: int,
    window: float,
    lateness: float,
    long_dwell_ms: int,
    lookups: Lookups | None = None,
) -> AttributionStats:
    """Pass 2: credits actions to impressions and emits the rows of impressions whose window
    closed (as frames in :data:`SCHEMA`, in ``(ts, seq)`` order but for out-of-order rows).
    ``lookups`` (default: a new one) ends up holding the posts and users of the rows."""
    heap: list[tuple[tuple[float, int], Impression]] = []
    by_pair: dict[tuple[int, int], list[Impression]] = {}
    lookups = Lookups() if lookups is None else lookups
    stats = AttributionStats()
    watermark = -math.inf
    last_written: tuple[float, int] | None = None

    def flush(until: float) -> None:
        nonlocal last_written
        ready: list[Impression] = []
        while heap and heap[0][0][0] <= until:
            _, imp = heapq.heappop(heap)
            pair = by_pair[(imp.user, imp.post)]
            pair.remove(imp)
            if not pair:
                del by_pair[(imp.user, imp.post)]
            if last_written is not None and imp.key < last_written:
                stats.out_of_order_rows += 1
            else:
                last_written = imp.key
            ready.append(imp)
        if ready:
            with metadata.transaction() as tx:
                lookups.load(tx, ready)
            emit(feature_frame(ready, lookups, activity, long_dwell_ms))

    fallback_seq = after_seq
    for events in _events_upto(metadata, after_seq, last_seq, read_batch):
        for e in events:
            seq = fallback_seq = _seq(e, fallback_seq + 1)
            ts = float(e.ts)
            watermark = max(watermark, ts)
            pair_key = (int(e.user_id), int(e.post_id))
            if e.kind == "impression":
                imp = Impression(e, seq)
                heapq.heappush(heap, (imp.key, imp))
                pair = by_pair.setdefault(pair_key, [])
                pair.append(imp)
                if len(pair) > 1 and pair[-2].key > imp.key:
                    pair.sort(key=lambda i: i.key)
            elif e.kind in ACTIONS:
                credited = None
                for imp in reversed(by_pair.get(pair_key, ())):
                    if imp.ts <= ts:
                        credited = imp
                        break
                if credited is not None and ts - credited.ts <= window:
                    credited.labels.add(e.kind)
                else:
                    stats.unattributed_actions += 1
        flush(watermark - window - lateness)
    stats.immature_rows = sum(1 for _, imp in heap if imp.ts + window > watermark)
    flush(math.inf)
    stats.missing_posts = lookups.missing_posts
    return stats
