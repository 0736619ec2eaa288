"""Traffic through the real social backend (embedded mode, manual clock) for the pipeline and
closed-loop tests: a scripted population whose engagement follows a pattern a model can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.social.backend import Backend, open_backend
from serving.social.clock import ManualClock
from serving.social.ranking import RankingClient
from serving.social.settings import settings_from_mapping

TOPICS = ("cats", "news", "food", "music", "sport", "travel")
T0 = 1_767_225_600
PASSWORD = "correct-horse"


def make_backend(
    folder: Path, clock: ManualClock | None = None, ranking: RankingClient | None = None
) -> tuple[Backend, ManualClock]:
    """An embedded backend in ``folder`` (rate limits off) on a manual clock at ``T0``."""
    clock = clock or ManualClock(T0)
    settings = settings_from_mapping({"data_dir": str(folder), "rate_limits": {"enabled": False}})
    return open_backend(settings, clock, ranking), clock


def simulate(backend: Backend, clock: ManualClock, *, users: int = 60, rounds: int = 6) -> None:
    """``users`` users (10 of them authors of 100 posts); each round every user sees 5 posts and
    engages mostly with posts of their country's favorite topic (``TOPICS[user % 3]``); everyone
    likes ``travel`` posts."""
    rng = np.random.default_rng(0)
    acc = backend.accounts
    countries, ages = ("US", "IN", "BR"), ("18-24", "25-34", "35-44", "45-54")
    uid = [
        acc.register(
            f"user{i:03d}", PASSWORD, country=countries[i % 3], age_bucket=ages[i % 4]
        ).user.id
        for i in range(users)
    ]
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
            clock.advance(10)
            for j, fav in zip(seen, likes_topic):
                post = post_ids[j]
                popular = post_topic[j] == "travel"  # liked by everyone
                if rng.random() < (0.7 if fav else 0.5 if popular else 0.03):
                    act.like(uid[i], post)
                if rng.random() < (0.35 if fav else 0.03):
                    act.save(uid[i], post)
                if rng.random() < (0.3 if fav else 0.03):
                    act.comment(uid[i], post, "so good")
                if rng.random() < (0.3 if fav else 0.03):
                    act.share(uid[i], post)
