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
``sts``         ``{prefix}sts:{viewer_id}``                 sorted set (seen stories)
``kv``          ``{prefix}kv:{key}``                        string with TTL
``rl``          ``{prefix}rl:{key}``                        hash (token bucket)
``bus``         ``{prefix}bus:{stream}``                    stream
==============  ==========================================  ========================
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

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
