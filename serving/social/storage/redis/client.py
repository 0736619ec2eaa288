"""The Redis connection the production adapters share, and the key names they use.

Every key starts with the backend's ``redis_prefix`` (``social:`` by default) so that one Redis
can hold several backends (or test runs) side by side and ``SCAN MATCH prefix*`` finds all of
one backend's keys. After the prefix comes a short namespace per adapter:

==============  ==========================================  ========================
namespace       key                                         type
==============  ==========================================  ========================
``tl``          ``{prefix}tl:{owner_id}``                   sorted set (timeline)
``tlb``         ``{prefix}tlb:{owner_id}``                  string (built mark)
``st``          ``{prefix}st:{author_id}``                  sorted set (active stories)
``stc``         ``{prefix}stc:{author_id}``                 hash (story created_at)
``stb``         ``{prefix}stb:all``                         string (trays built mark)
``kv``          ``{prefix}kv:{key}``                        string with TTL
``rl``          ``{prefix}rl:{key}``                        hash (token bucket)
``bus``         ``{prefix}bus:{stream}``                    stream
==============  ==========================================  ========================
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from serving.social.domain import Unavailable

log = logging.getLogger(__name__)

C = TypeVar("C", bound=type)

#: Seconds the adapters of a client answer :class:`Unavailable` at once after Redis failed (no
#: connection attempt, no retries: a request does not wait for a dead server), before one call
#: tries it again. Also the ``Retry-After`` of the 503 the API answers.
OUTAGE_BACKOFF_S = 1.0

#: Seconds a command may wait for its reply before the client gives up (blocking stream reads
#: are shortened to fit inside it, see :class:`~serving.social.storage.redis.bus.RedisEventBus`).
DEFAULT_SOCKET_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_HEALTH_CHECK_INTERVAL_S = 30


def make_redis(
    url: str,
    *,
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    health_check_interval_s: int = DEFAULT_HEALTH_CHECK_INTERVAL_S,
    max_connections: int | None = None,
) -> redis.Redis:
    """A thread-safe client (one connection pool) for ``url``, e.g. ``redis://127.0.0.1:6379/0``.

    Replies stay ``bytes`` (``decode_responses=False``); idle pooled connections are pinged
    before reuse after ``health_check_interval_s``; connection errors and timeouts are retried
    three times with a short jittered backoff. Nothing is sent until the first command.

    >>> make_redis("redis://127.0.0.1:6379/0").connection_pool.connection_kwargs["db"]
    0
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"redis_url must start with redis://, rediss:// or unix://, got {url!r}")
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        socket_keepalive=True,
        health_check_interval=health_check_interval_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
        max_connections=max_connections,
    )


def check_prefix(prefix: str) -> str:
    """Returns ``prefix`` after checking it is a non-empty string without whitespace.

    >>> check_prefix("social:")
    'social:'
    """
    if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
        raise ValueError(
            f"redis_prefix must be a non-empty string without whitespace, got {prefix!r}"
        )
    return prefix


def namespace(prefix: str, name: str) -> str:
    """The common start of one adapter's keys: ``prefix + name + ':'``.

    >>> namespace("social:", "tl")
    'social:tl:'
    """
    return f"{check_prefix(prefix)}{name}:"


def make_key(prefix: str, name: str, *parts: object) -> str:
    """One key: the prefix, the adapter's namespace, then ``parts`` joined by ``:``.

    >>> make_key("social:", "tl", 42)
    'social:tl:42'
    >>> make_key("social:", "rl", "writes", 7)
    'social:rl:writes:7'
    """
    return namespace(prefix, name) + ":".join(str(part) for part in parts)


def socket_timeout_s(client: redis.Redis) -> float | None:
    """The client's socket timeout in seconds (None: wait forever)."""
    value = client.connection_pool.connection_kwargs.get("socket_timeout")
    return None if value is None else float(value)


class Outage:
    """The state of one client's server as its adapters saw it: after a connection error or
    timeout, calls fail fast with :class:`Unavailable` for :data:`OUTAGE_BACKOFF_S`."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raises :class:`Unavailable` while the last failure is recent."""
        left = self._until - time.monotonic()
        if left > 0:
            raise Unavailable("Redis is unavailable; retry shortly", retry_after=left)

    def failed(self, error: Exception) -> Unavailable:
        """Records a failure now; returns the error to raise."""
        with self._lock:
            if time.monotonic() >= self._until:
                log.warning("Redis unavailable (%s: %s)", type(error).__name__, error)
            self._until = time.monotonic() + OUTAGE_BACKOFF_S
        return Unavailable("Redis is unavailable; retry shortly", retry_after=OUTAGE_BACKOFF_S)


_OUTAGES: weakref.WeakKeyDictionary[redis.Redis, Outage] = weakref.WeakKeyDictionary()
_OUTAGES_LOCK = threading.Lock()


def outage_of(client: redis.Redis) -> Outage:
    """The :class:`Outage` shared by every adapter on ``client``."""
    with _OUTAGES_LOCK:
        outage = _OUTAGES.get(client)
        if outage is None:
            outage = _OUTAGES[client] = Outage()
        return outage


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded_method(self: Any, *args: Any, **kwargs: Any) -> Any:
        outage = outage_of(self._client)
        outage.check()
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise outage.failed(error) from error

    return guarded_method


def guarded(cls: C) -> C:
    """Class decorator of the adapters (which keep their client as ``self._client``): each
    public method that talks to Redis raises :class:`Unavailable` (a 503 with ``Retry-After``
    in the API) instead of a driver error when the server is down or does not answer, and fails
    fast while a failure is recent (:class:`Outage`). Key-name helpers (``*key``) and ``close``
    are left as they are."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or name.endswith("key") or name == "close":
            continue
        if callable(member) and not isinstance(member, staticmethod | classmethod | type):
            setattr(cls, name, _guard(member))
    return cls
