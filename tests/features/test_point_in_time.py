"""Point-in-time correctness of the training set, as a property: for random follow logs
(follows, unfollows, refollows, several changes in the same second), random impressions and
random label times, every feature Feast joins to a label equals what a brute-force replay of
the events up to the label's time gives, so no value written after a label's timestamp
reaches its row; the activity views' TTL hides rows older than it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from recsys.features.schema import ACTIVITY_TTL_S, ACTIVITY_WINDOWS
from recsys.features.store import StoreSettings, open_store
from recsys.features.tables import EventTables, build_sources, write_sources
from recsys.features.training import historical_features

T = 1_700_000_000
TICK = 1_800  # every time is T + k * TICK: ties are common; 1 h = 2 ticks, 7 d = 336
USERS, AUTHORS = ("u0", "u1", "u2"), ("a0", "a1")
REFS = [
    "follow_pair:is_following",
    "author_followers:follower_count",
    "user_follows:follow_count",
    *(f"user_activity:impressions_{w}" for w in ACTIVITY_WINDOWS),
]

follow_events = st.lists(
    st.tuples(st.sampled_from(USERS), st.sampled_from(AUTHORS), st.integers(0, 12), st.booleans()),
    max_size=14,
)
impressions = st.lists(st.tuples(st.sampled_from(USERS), st.integers(0, 400)), max_size=12)
labels = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(AUTHORS),
        st.one_of(st.integers(0, 14), st.integers(0, 1200)),
    ),
    min_size=1,
    max_size=10,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    data = tmp_path_factory.mktemp("pit")
    yield open_store(StoreSettings(data)), data / "sources"


def _tables(follows: list, imps: list) -> EventTables:
    return EventTables(
        follows=pl.DataFrame(
            {
                "user_id": [u for u, _, _, _ in follows],
                "author_id": [a for _, a, _, _ in follows],
                "ts": [float(T + k * TICK) for _, _, k, _ in follows],
                "seq": list(range(1, len(follows) + 1)),
                "following": [f for _, _, _, f in follows],
            },
            schema={
                "user_id": pl.Utf8,
                "author_id": pl.Utf8,
                "ts": pl.Float64,
                "seq": pl.Int64,
                "following": pl.Boolean,
            },
        ),
        impressions=pl.DataFrame(
            {"user_id": [u for u, _ in imps], "ts": [T + k * TICK for _, k in imps]},
            schema={"user_id": pl.Utf8, "ts": pl.Int64},
        ),
        posts=pl.DataFrame(
            {
                "post_id": ["p0"],
                "author_id": ["a0"],
                "topic": ["t"],
                "media_type": ["text"],
                "post_length": [1.0],
                "created_at": [float(T)],
            }
        ),
        users=pl.DataFrame(
            {
                "user_id": list(USERS),
                "country": ["US"] * 3,
                "age_bucket": ["18-24"] * 3,
                "user_activity": ["low"] * 3,
            }
        ),
    )


def _state(follows: list, user: str, author: str, k: int) -> int | None:
    """The pair's state after its latest change at or before tick ``k``: the latest tick, and
    within a tick the latest in log order (the list's order is the log's ``seq``)."""
    mine = [(t, seq, f) for seq, (u, a, t, f) in enumerate(follows) if (u, a) == (user, author)]
    past = [e for e in mine if e[0] <= k]
    return int(max(past)[2]) if past else None


def _count(
    follows: list, k: int, *, author: str | None = None, user: str | None = None
) -> int | None:
    mine = [
        e for e in follows if (author is None or e[1] == author) and (user is None or e[0] == user)
    ]
    if not any(t <= k for _, _, t, _ in mine):
        return None  # no row yet: Feast has nothing to join
    pairs = {(u, a) for u, a, _, _ in mine}
    return sum(_state(follows, u, a, k) == 1 for u, a in pairs)


def _activity(imps: list, user: str, k: int) -> dict[str, int | None]:
    times = [t for u, t in imps if u == user]
    spans = {w: s // TICK for w, s in ACTIVITY_WINDOWS.items()}
    rows = [t + d for t in times for d in (0, *spans.values())]
    latest = max((r for r in rows if r <= k), default=None)
    if latest is None or (k - latest) * TICK > ACTIVITY_TTL_S:
        return dict.fromkeys(ACTIVITY_WINDOWS)
    return {w: sum(k - s < t <= k for t in times) for w, s in spans.items()}


@settings(
    max_examples=25,
    deadline=None,
    # no shrinking: each example is a Feast query (~0.3 s); a failure prints it unshrunk
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(follows=follow_events, imps=impressions, asked=labels)
@example(  # unfollow then refollow in the same second, a label in that second and after
    follows=[
        ("u0", "a0", 1, True),
        ("u0", "a0", 5, False),
        ("u0", "a0", 5, True),
        ("u1", "a0", 5, True),
    ],
    imps=[("u0", 0), ("u0", 1)],
    asked=[("u0", "a0", 4), ("u0", "a0", 5), ("u0", "a0", 6), ("u1", "a0", 4), ("u0", "a1", 3)],
)
@example(  # the log out of time order: the later time wins, not the later entry
    follows=[("u0", "a0", 5, False), ("u0", "a0", 3, True)],
    imps=[],
    asked=[("u0", "a0", 4), ("u0", "a0", 5)],
)
@example(  # a label long after the last activity: past the TTL
    follows=[("u0", "a0", 0, True)], imps=[("u0", 0)], asked=[("u0", "a0", 300), ("u0", "a0", 1100)]
)
def test_training_rows_see_only_the_past(
    store: tuple, follows: list, imps: list, asked: list
) -> None:
    feature_store, sources = store
    write_sources(build_sources(_tables(follows, imps)), sources)
    frame = pl.DataFrame(
        {
            "user_id": [u for u, _, _ in asked],
            "post_id": ["p0"] * len(asked),
            "author_id": [a for _, a, _ in asked],
            "timestamp": [T + k * TICK for _, _, k in asked],
        }
    )
    got = historical_features(feature_store, frame, REFS).to_dicts()
    for (user, author, k), row in zip(asked, got):
        expected = {
            "is_following": _state(follows, user, author, k),
            "follower_count": _count(follows, k, author=author),
            "follow_count": _count(follows, k, user=user),
            **{f"impressions_{w}": v for w, v in _activity(imps, user, k).items()},
        }
        assert row == expected, (user, author, k)
