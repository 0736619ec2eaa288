"""Token-bucket rate limits on Redis (the production :class:`RateLimiter`)."""

from __future__ import annotations

import math

import redis

from serving.social.storage.redis.client import check_prefix, guarded, namespace

# KEYS[1]: the bucket hash; ARGV: capacity, refill per second, now (caller's clock), cost.
# Returns the seconds to wait as a string (a Lua number would be truncated to an integer reply):
# "0" when the tokens were taken, "-1" when they never will be there (no refill).
_ACQUIRE_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
end
if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) * rate)
    ts = now
end
local wait = 0
-- Unix times near 1.8e9 carry only ~2.4e-7 s of float precision, so a caller coming back exactly
-- after the wait it was told may find a hair less than ``cost``: up to 1 us short still counts.
if tokens >= cost or (rate > 0 and (cost - tokens) / rate <= 1e-6) then
    tokens = math.max(0, tokens - cost)
elseif rate > 0 then
    wait = (cost - tokens) / rate
else
    wait = -1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', ts))
if rate > 0 then
    local full_ms = math.ceil((capacity - tokens) / rate * 1000) + 1000
    redis.call('PEXPIRE', KEYS[1], full_ms)
end
return string.format('%.17g', wait)
"""


@guarded
class RedisRateLimiter:
    """Token buckets in hashes ``{prefix}rl:{key}`` (fields ``tokens`` and ``ts``), refilled
    and spent by one Lua script, so concurrent callers (threads, processes, hosts) never take
    more tokens than there are.

    Time is the caller's ``now`` (the backend clock; a manual one in tests), passed into the
    script. A caller whose ``now`` is behind the bucket's last update gets no refill (the bucket
    never runs backwards). A grant short of ``cost`` by at most one microsecond of refill is
    allowed (float rounding of unix times), so retrying after the returned wait succeeds. A
    missing bucket starts full; the key expires (Redis time) once it would be full again, which
    is the same as keeping it. With ``refill_per_s`` <= 0 an empty
    bucket never refills: :meth:`acquire` then returns ``math.inf`` and the key does not expire.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self.prefix = check_prefix(prefix)
        self._rl = namespace(prefix, "rl")
        self._script = client.register_script(_ACQUIRE_LUA)

    def key(self, key: str) -> str:
        """The Redis key of bucket ``key``."""
        return f"{self._rl}{key}"

    def acquire(
        self, key: str, capacity: float, refill_per_s: float, now: float, cost: float = 1.0
    ) -> float:
        """Takes ``cost`` tokens and returns 0.0, or takes nothing and returns the seconds until
        ``cost`` tokens will be there. Raises ``ValueError`` when ``cost`` exceeds ``capacity``
        (it could never be granted) or either is not positive."""
        if capacity <= 0 or cost <= 0:
            raise ValueError(f"capacity and cost must be > 0, got {capacity!r} and {cost!r}")
        if cost > capacity:
            raise ValueError(f"cost {cost!r} exceeds the bucket capacity {capacity!r}")
        reply = self._script(
            keys=[self.key(key)],
            args=[
                repr(float(capacity)),
                repr(float(refill_per_s)),
                repr(float(now)),
                repr(float(cost)),
            ],
        )
        wait = float(reply)
        return math.inf if wait < 0 else wait
