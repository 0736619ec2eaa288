"""The synthetic population and its behaviour.

``users`` users in three countries (``US``, ``IN``, ``BR``) and four age buckets; the first 10
are authors of 100 posts over six topics, and every user follows three of them. Each round,
every user is shown 5 random posts (an impression with a dwell time) and engages with them:
posts of their country's favorite topic (``TOPICS[user % 3]``) are liked (70 %), saved,
commented and shared (30-35 %) and dwelled on; ``travel`` posts are liked by everyone (50 %);
anything else rarely (3 %). The same seed gives the same traffic.

Example::

    backend, clock = open_backend(settings, ManualClock(start)), ...
    summary = simulate(backend, clock, users=60, rounds=6)   # 1,800 impressions
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.social.backend import Backend
from serving.social.clock import ManualClock

__all__ = ["PASSWORD", "TOPICS", "TrafficSummary", "simulate"]

TOPICS = ("cats", "news", "food", "music", "sport", "travel")
PASSWORD = "correct-horse"


@dataclass
class TrafficSummary:
    """What one :func:`simulate` wrote."""

    users: int = 0
    posts: int = 0
    impressions: int = 0
    engagements: int = 0

    def line(self) -> str:
        return (
            f"social traffic: {self.users} users, {self.posts} posts, {self.impressions} "
            f"impressions, {self.engagements} engagements"
        )


def simulate(
    backend: Backend,
    clock: ManualClock,
    *,
    users: int = 60,
    rounds: int = 6,
    seed: int = 0,
    prefix: str = "user",
) -> TrafficSummary:
    """Drives ``backend`` (see the module docstring); the clock advances about
    ``6_000 + users * rounds * 40`` seconds. Returns what was written.

    Raises:
        ValueError: fewer than 10 users, or rounds < 1.
    """
    if users < 10 or rounds < 1:
        raise ValueError(f"social traffic needs users >= 10 and rounds >= 1, got {users}, {rounds}")
    rng = np.random.default_rng(seed)
    summary = TrafficSummary()
    acc = backend.accounts
    countries, ages = ("US", "IN", "BR"), ("18-24", "25-34", "35-44", "45-54")
    uid = [
        acc.register(
            f"{prefix}{i:03d}", PASSWORD, country=countries[i % 3], age_bucket=ages[i % 4]
        ).user.id
        for i in range(users)
    ]
    summary.users = users
    for i in range(users):
        for step in (1, 3, 7):
            if (i + step) % 10 != i:
                acc.follow(uid[i], uid[(i + step) % 10])
    post_ids, post_topic = [], []
    for k in range(100):
        clock.advance(60)
        author, topic = k % 10, TOPICS[(k * 7) % 6]
        post_ids.append(
            backend.posts.create(uid[author], caption="word " * (1 + k % 13), topic=topic)["id"]
        )
        post_topic.append(topic)
    summary.posts = len(post_ids)
    act = backend.interactions
    for _ in range(rounds):
        for i in range(users):
            clock.advance(30)
            favorite = TOPICS[i % 3]  # shared by the users of one country
            seen = rng.choice(len(post_ids), 5, replace=False)
            likes_topic = [post_topic[j] == favorite for j in seen]
            dwell = [
                int(
                    rng.integers(6000, 20_000)
                    if f and rng.random() < 0.8
                    else rng.integers(0, 4000)
                )
                for f in likes_topic
            ]
            act.impressions(
                uid[i], [{"post_id": post_ids[j], "dwell_ms": d} for j, d in zip(seen, dwell)]
            )
            summary.impressions += len(seen)
            clock.advance(10)
            for j, fav in zip(seen, likes_topic):
                post = post_ids[j]
                popular = post_topic[j] == "travel"  # liked by everyone
                if rng.random() < (0.7 if fav else 0.5 if popular else 0.03):
                    act.like(uid[i], post)
                    summary.engagements += 1
                if rng.random() < (0.35 if fav else 0.03):
                    act.save(uid[i], post)
                    summary.engagements += 1
                if rng.random() < (0.3 if fav else 0.03):
                    act.comment(uid[i], post, "so good")
                    summary.engagements += 1
                if rng.random() < (0.3 if fav else 0.03):
                    act.share(uid[i], post)
                    summary.engagements += 1
    return summary
