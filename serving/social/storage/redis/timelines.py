"""Pushed timelines on Redis sorted sets (the production :class:`TimelineStore`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from serving.social.storage.checks import at_least_one
from serving.social.storage.redis.client import check_prefix, guarded, namespace

#: Keys per script call (and per pipelined command batch). Large enough that the per-call
#: overhead (one round trip, argument encoding) is spread thin, small enough that one call
#: keeps Redis busy for only a few milliseconds, so other clients are not stalled.
DEFAULT_CHUNK = 1000

# For every key: add ARGV[1] (score = member = post id) and, when it was new and the set has
# grown past the cap, trim the oldest so only the newest ``cap`` (ARGV[2]) remain.
_PUSH_LUA = """
local member = ARGV[1]
local cap = tonumber(ARGV[2])
local added = 0
for i = 1, #KEYS do
    local key = KEYS[i]
    if redis.call('ZADD', key, member, member) == 1 then
        added = added + 1
        if redis.call('ZCARD', key) > cap then
            redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
        end
    end
end
return added
"""


def _chunks(items: Sequence[object], size: int) -> Iterable[Sequence[object]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@guarded
class RedisTimelineStore:
    """Per-owner timelines as sorted sets ``{prefix}tl:{owner}`` (member = score = post id,
    exact in a float64 up to 2**53), capped to the newest ``cap`` entries, plus a built mark
    ``{prefix}tlb:{owner}``.

    Fan-out on write is the hot path: one post goes to every follower's timeline, so
    :meth:`push` must sustain tens of thousands of inserts per second from one Python process.
    A per-key pipeline (ZADD + ZREMRANGEBYRANK per follower) spends most of its time in Python
    building and parsing two commands per key. Instead one Lua script, registered once
    (``EVALSHA``), receives up to :data:`DEFAULT_CHUNK` timeline keys per call and does the
    ZADD and the trim for each key inside Redis: Python sends one command with the key list and
    reads one integer back. Each call is atomic (a reader never sees an untrimmed set) and the
    script's ZADD makes a re-push a no-op, so :meth:`push` is idempotent. The chunks of one push
    are sent together in a single non-transactional pipeline (one round trip).

    Scripts touching many keys assume a single Redis (or all keys in one cluster slot); the
    production deployment uses one primary for timelines.
    """

    def __init__(
        self, client: redis.Redis, prefix: str, cap: int, *, chunk: int = DEFAULT_CHUNK
    ) -> None:
        self._client = client
        self.prefix = check_prefix(prefix)
        self.cap = at_least_one(cap, "timeline cap")
        self._chunk = at_least_one(chunk, "chunk")
        self._tl = namespace(prefix, "tl")
        self._tlb = namespace(prefix, "tlb")
        self._push_script = client.register_script(_PUSH_LUA)

    def key(self, owner_id: int) -> str:
        """The sorted-set key of ``owner_id``'s timeline."""
        return f"{self._tl}{int(owner_id)}"

    def built_key(self, owner_id: int) -> str:
        """The string key marking ``owner_id``'s timeline as built."""
        return f"{self._tlb}{int(owner_id)}"

    def push(self, post_id: int, owner_ids: Sequence[int]) -> None:
        """Adds ``post_id`` to every owner's timeline and trims each to ``cap`` (idempotent)."""
        self.push_counted(post_id, owner_ids)

    def push_counted(self, post_id: int, owner_ids: Sequence[int]) -> int:
        """:meth:`push`, returning how many timelines did not hold ``post_id`` yet (for
        benchmarks and metrics)."""
        if not owner_ids:
            return 0
        member = str(int(post_id))
        tl = self._tl
        keys = [f"{tl}{int(owner)}" for owner in owner_ids]
        args = (member, self.cap)
        if len(keys) <= self._chunk:
            return int(self._push_script(keys=keys, args=args))
        pipe = self._client.pipeline(transaction=False)
        for chunk in _chunks(keys, self._chunk):
            self._push_script(keys=chunk, args=args, client=pipe)
        return sum(int(n) for n in pipe.execute())

    def push_many(self, owner_id: int, post_ids: Sequence[int]) -> None:
        """Adds many posts to one timeline (backfill) and trims it to ``cap`` (idempotent).

        Only the newest ``cap`` of ``post_ids`` can survive the trim, so only those are sent;
        the add and the trim run in one MULTI/EXEC."""
        if not post_ids:
            return
        newest = sorted({int(p) for p in post_ids})[-self.cap :]
        key = self.key(owner_id)
        pipe = self._client.pipeline(transaction=True)
        for chunk in _chunks(newest, self._chunk):
            pipe.zadd(key, {str(p): p for p in chunk})
        pipe.zremrangebyrank(key, 0, -(self.cap + 1))
        pipe.execute()

    def remove(self, owner_ids: Sequence[int], post_ids: Sequence[int]) -> None:
        """Removes ``post_ids`` from every owner's timeline (pipelined ZREM)."""
        if not owner_ids or not post_ids:
            return
        members = [str(int(p)) for p in post_ids]
        pipe = self._client.pipeline(transaction=False)
        for n, owner in enumerate(owner_ids, 1):
            pipe.zrem(self.key(owner), *members)
            if n % self._chunk == 0:
                pipe.execute()
        pipe.execute()

    def page(self, owner_id: int, limit: int, before_id: int | None = None) -> list[int]:
        """Post ids < ``before_id`` (all when None), newest first, at most ``limit``."""
        if limit <= 0:
            return []
        upper = "+inf" if before_id is None else f"({int(before_id)}"
        ids = self._client.zrevrangebyscore(self.key(owner_id), upper, "-inf", start=0, num=limit)
        return [int(i) for i in ids]

    def is_built(self, owner_id: int) -> bool:
        """Whether :meth:`mark_built` was called for the owner since the last :meth:`drop`."""
        return bool(self._client.exists(self.built_key(owner_id)))

    def mark_built(self, owner_id: int) -> None:
        """Marks the owner's timeline as built."""
        self._client.set(self.built_key(owner_id), b"1")

    def drop(self, owner_id: int) -> None:
        """Removes the timeline and its built mark."""
        self._client.delete(self.key(owner_id), self.built_key(owner_id))

    def drop_many(self, owner_ids: Sequence[int]) -> None:
        """:meth:`drop` for many owners (one DEL per chunk, pipelined)."""
        if not owner_ids:
            return
        keys: list[str] = []
        for owner in owner_ids:
            keys.append(self.key(owner))
            keys.append(self.built_key(owner))
        pipe = self._client.pipeline(transaction=False)
        for chunk in _chunks(keys, self._chunk):
            pipe.delete(*chunk)
        pipe.execute()
