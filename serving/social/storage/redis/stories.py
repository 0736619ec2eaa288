"""Active-story trays on Redis (the production :class:`StoryCache`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis

from serving.social.domain import Story
from serving.social.storage.redis.client import check_prefix, guarded, namespace

#: Extra lifetime given to story keys past the expiry of their newest story, so a reader whose
#: clock runs a little behind Redis's still finds the tray (reads filter on ``now`` anyway).
KEY_GRACE_S = 3_600.0


@guarded
class RedisStoryCache:
    """Per author ``{prefix}st:{author}`` (sorted set: story id scored by ``expires_at``) and
    ``{prefix}stc:{author}`` (hash: story id -> ``created_at``), and the mark
    ``{prefix}stb:all`` that the trays were rebuilt from the database since Redis last lost its
    data: the trays are a cache of the ``stories`` table (seen marks are the database's
    ``story_views``).

    Expiry is decided by the caller's ``now`` (the backend's clock, a manual one in tests), never
    by Redis's: :meth:`active` returns only stories with ``expires_at > now``. Keys also carry a
    *relative* Redis TTL (the story lifetime plus :data:`KEY_GRACE_S`, only ever extended) so
    abandoned trays disappear without a sweeper; it is relative because the backend's clock
    need not match Redis's. ``story_ttl_s`` is the longest lifetime a story can have
    (``stories.ttl_s``).
    """

    def __init__(self, client: redis.Redis, prefix: str, *, story_ttl_s: float = 86_400.0) -> None:
        if story_ttl_s <= 0:
            raise ValueError(f"story_ttl_s must be > 0, got {story_ttl_s!r}")
        self._client = client
        self.prefix = check_prefix(prefix)
        self.story_ttl_s = float(story_ttl_s)
        self._st = namespace(prefix, "st")
        self._stc = namespace(prefix, "stc")
        self._built = f"{namespace(prefix, 'stb')}all"

    def _ttl_ms(self, lifetime_s: float) -> int:
        return math.ceil((max(lifetime_s, 0.0) + KEY_GRACE_S) * 1000)

    @staticmethod
    def _extend_ttl(pipe: redis.client.Pipeline, key: str, ttl_ms: int) -> None:
        # NX sets a TTL on a key without one; GT only ever lengthens an existing one.
        pipe.pexpire(key, ttl_ms, nx=True)
        pipe.pexpire(key, ttl_ms, gt=True)

    def add(self, story: Story) -> None:
        """Adds ``story`` to its author's tray."""
        st = f"{self._st}{int(story.author_id)}"
        stc = f"{self._stc}{int(story.author_id)}"
        ttl_ms = self._ttl_ms(story.expires_at - story.created_at)
        pipe = self._client.pipeline(transaction=True)
        pipe.zadd(st, {str(int(story.id)): float(story.expires_at)})
        pipe.hset(stc, str(int(story.id)), repr(float(story.created_at)))
        self._extend_ttl(pipe, st, ttl_ms)
        self._extend_ttl(pipe, stc, ttl_ms)
        pipe.execute()

    def remove(self, stories: Sequence[Story]) -> None:
        """Removes ``stories`` from their authors' trays (pipelined)."""
        if not stories:
            return
        pipe = self._client.pipeline(transaction=False)
        for story in stories:
            member = str(int(story.id))
            pipe.zrem(f"{self._st}{int(story.author_id)}", member)
            pipe.hdel(f"{self._stc}{int(story.author_id)}", member)
        pipe.execute()

    def active(
        self, author_ids: Sequence[int], now: float
    ) -> dict[int, list[tuple[int, float, float]]]:
        """``{author: [(story_id, created_at, expires_at), ...]}`` oldest first, for the authors
        with at least one story whose ``expires_at > now`` (strictly)."""
        authors = list(dict.fromkeys(int(a) for a in author_ids))
        if not authors:
            return {}
        lower = f"({float(now)!r}"
        pipe = self._client.pipeline(transaction=False)
        for author in authors:
            pipe.zrangebyscore(f"{self._st}{author}", lower, "+inf", withscores=True)
        ranges = pipe.execute()
        found = [(a, r) for a, r in zip(authors, ranges, strict=True) if r]
        if not found:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for author, members in found:
            pipe.hmget(f"{self._stc}{author}", [m for m, _ in members])
        created_lists = pipe.execute()
        result: dict[int, list[tuple[int, float, float]]] = {}
        for (author, members), created in zip(found, created_lists, strict=True):
            tray = []
            for (member, expires_at), created_at in zip(members, created, strict=True):
                # A story whose hash entry is missing (removed concurrently) is skipped.
                if created_at is not None:
                    tray.append((int(member), float(created_at), float(expires_at)))
            if tray:
                tray.sort(key=lambda s: (s[1], s[0]))
                result[author] = tray
        return result

    def is_built(self) -> bool:
        """Whether the trays were rebuilt from the database (:meth:`mark_built`) since this
        Redis last lost its data (a restart without persistence, a flush)."""
        return bool(self._client.exists(self._built))

    def mark_built(self) -> None:
        """Marks the trays as rebuilt from the database (the mark has no TTL)."""
        self._client.set(self._built, b"1")
