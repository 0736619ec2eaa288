"""Backend traffic where following comes after engaging: a user who likes a post follows its
author (60 %), so the follow graph at export time knows which impressions were liked. The
export's ``is_following`` (as of the export) leaks the label; the feature store's (as of each
impression) does not."""

from __future__ import annotations

import numpy as np

from serving.social.backend import Backend
from serving.social.clock import ManualClock
from tests.pipelines.social_traffic import PASSWORD

TOPICS = ("cats", "news", "food", "music", "sport", "travel")


def simulate_follow_after_like(
    backend: Backend, clock: ManualClock, *, users: int = 60, rounds: int = 12, seed: int = 0
) -> int:
    """Drives ``backend``; returns the impressions written. Each user has a hidden liking for
    3 of the 10 authors (70 % like, else 5 %); a like is followed by a follow of the author
    with probability 0.6."""
    rng = np.random.default_rng(seed)
    acc, act = backend.accounts, backend.interactions
    uid = [acc.register(f"leak{i:03d}", PASSWORD, country="US").user.id for i in range(users)]
    liked = [set(rng.choice(10, 3, replace=False).tolist()) for _ in range(users)]
    posts, post_author = [], []
    for k in range(120):
        clock.advance(60)
        posts.append(
            backend.posts.create(uid[k % 10], caption="x" * (1 + k % 9), topic=TOPICS[k % 6])["id"]
        )
        post_author.append(k % 10)
    following: set[tuple[int, int]] = set()
    impressions = 0
    for _ in range(rounds):
        for i in range(users):
            clock.advance(30)
            seen = rng.choice(len(posts), 5, replace=False)
            act.impressions(uid[i], [{"post_id": posts[j], "dwell_ms": 1000} for j in seen])
            impressions += len(seen)
            clock.advance(10)
            for j in seen:
                author = post_author[j]
                if rng.random() < (0.7 if author in liked[i] else 0.05):
                    act.like(uid[i], posts[j])
                    if author != i and (i, author) not in following and rng.random() < 0.6:
                        clock.advance(1)
                        acc.follow(uid[i], uid[author])
                        following.add((i, author))
    return impressions
