"""What keeps the API answering while Redis is down: rate limits in this process's memory
(:class:`MemoryRateLimiter`) standing in for the shared ones (:class:`FallbackRateLimiter`).

Rate limits are the one piece of Redis state every request touches; failing them closed would
make Redis a dependency of every read PostgreSQL could serve, failing them open would drop the
protection exactly when the system is weakest. So during an outage each process limits on its
own buckets (same capacities and rates: a client spreading requests over N processes gets at
most N times its share), and the shared buckets take over again once Redis answers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from serving.social.domain import Unavailable
from serving.social.storage.interfaces import RateLimiter

log = logging.getLogger(__name__)


class MemoryRateLimiter:
    """Token buckets in a dict (at most ``max_buckets``, least recently used dropped first: a
    dropped bucket starts full again), with the semantics of the shared limiters: a new bucket
    starts full, time is the caller's ``now``, no refill when ``now`` runs backwards, and with
    ``refill_per_s`` <= 0 an empty bucket answers ``-1`` (never)."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self.max_buckets = max(1, int(max_buckets))
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(
        self, key: str, capacity: float, refill_per_s: float, now: float, cost: float = 1.0
    ) -> float:
        """Takes ``cost`` tokens and returns 0.0, or takes nothing and returns the seconds until
        ``cost`` tokens will be there (``-1`` when they never will)."""
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(capacity), float(now)))
            if now > at:
                tokens = min(float(capacity), tokens + (now - at) * refill_per_s)
                at = float(now)
            if tokens >= cost:
                tokens -= cost
                wait = 0.0
            elif refill_per_s > 0:
                wait = (cost - tokens) / refill_per_s
            else:
                wait = -1.0
            self._buckets[key] = (tokens, at)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        return wait


class FallbackRateLimiter:
    """``primary`` (the shared Redis buckets), or ``fallback`` while ``primary`` raises
    :class:`~serving.social.domain.Unavailable`."""

    def __init__(self, primary: RateLimiter, fallback: RateLimiter | None = None) -> None:
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryRateLimiter()

    def acquire(
        self, key: str, capacity: float, refill_per_s: float, now: float, cost: float = 1.0
    ) -> float:
        try:
            return self.primary.acquire(key, capacity, refill_per_s, now, cost)
        except Unavailable:
            return self.fallback.acquire(key, capacity, refill_per_s, now, cost)
