"""The shared FastAPI dependencies of every router: the one place a route gets what it needs.

- :data:`BackendDep`: the :class:`~serving.social.backend.Backend` the app was built over (the
  services container), looked up on ``request.app.state``;
- :func:`current_user`: the user id behind ``Authorization: Bearer <token>``;
  :data:`Reader`, :data:`Writer` and :data:`Uploader` are that user after a token from the
  ``reads``, ``writes`` or ``uploads`` bucket (429 with ``Retry-After`` when it is empty), and
  :func:`auth_limited` limits registration and login per client address (bucket ``auth``;
  :func:`client_address` believes ``X-Forwarded-For`` only from ``server.trusted_proxies``);
- :data:`Id` (a path id) and the pagination parameters :data:`PageLimit`,
  :data:`BeforeIdCursor`, :data:`OffsetCursor`, :data:`FeedLimit` and :data:`FeedCursor`;
- :class:`Body`, the base of every JSON request body (strict types: ``true`` is not an integer,
  ``"1"`` is not a number), with :data:`Text` (a string without NUL characters or lone
  surrogates, which PostgreSQL cannot store: a 422 naming the field on every storage) and
  :data:`BodyId`;
- :data:`IdempotencyHeader` and :func:`idempotency`: the optional ``Idempotency-Key`` of a
  write.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, Header, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from serving.social.backend import Backend
from serving.social.domain import MAX_ID, IdempotencyKey, RateLimited, Unauthorized

__all__ = [
    "BackendDep",
    "BeforeIdCursor",
    "Body",
    "BodyId",
    "FeedCursor",
    "FeedLimit",
    "Id",
    "IdempotencyHeader",
    "OffsetCursor",
    "PageLimit",
    "Reader",
    "Text",
    "Uploader",
    "Writer",
    "auth_limited",
    "bearer_token",
    "client_address",
    "current_user",
    "get_backend",
    "idempotency",
]

#: A path id: a positive integer that fits the databases' BIGINT (larger ones are a 422, not a
#: driver overflow).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]

#: An id in a JSON body (same bounds as :data:`Id`).
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]

#: What no stored text may contain: NUL (PostgreSQL text cannot hold it) and lone UTF-16
#: surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    if _UNSTORABLE.search(value):
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


#: A string field of a request body that every storage can hold.
Text = Annotated[
    str,
    AfterValidator(_storable),
    Field(json_schema_extra={"pattern": "^[^\\u0000\\ud800-\\udfff]*$"}),
]


class Body(BaseModel):
    """Base of the JSON request bodies: strict types, so a boolean is not accepted as an
    integer nor a number as a string."""

    model_config = ConfigDict(strict=True)


#: The optional ``Idempotency-Key`` header of a write: 1-128 visible ASCII characters (a UUID
#: is typical). A retry with the same key gets the first answer back and creates nothing.
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[!-~]+$",
        description="retries with the same key return the first answer, creating nothing",
    ),
]


def idempotency(user_id: int, header: str | None) -> IdempotencyKey | None:
    """The caller's idempotency key of this write, or None when the header is absent."""
    return IdempotencyKey(user_id, header) if header is not None else None


#: Page size of a listing (an author's posts, a post's comments).
PageLimit = Annotated[int, Query(ge=1, le=100)]
#: Keyset cursor: the last id of the previous page (an author's posts); absent on page one.
BeforeIdCursor = Annotated[int | None, Query(ge=1, le=MAX_ID)]
#: Cursor that counts from 0 (a post's comments).
OffsetCursor = Annotated[int, Query(ge=0, le=MAX_ID)]
#: Page size of the home feed (its upper bound and default are ``feed.*`` settings).
FeedLimit = Annotated[int | None, Query(ge=1)]
#: The feed's opaque cursor, as the previous page returned it.
FeedCursor = Annotated[str | None, Query(max_length=200)]


#: The rate-limit buckets (``rate_limits.<bucket>`` settings).
Bucket = Literal["reads", "writes", "uploads", "auth"]


def get_backend(request: Request) -> Backend:
    """The backend (storage, services, settings) that serves this app."""
    return request.app.state.backend


BackendDep = Annotated[Backend, Depends(get_backend)]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value ('' when there is none)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def current_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> int:
    """The user id of the request's bearer token; 401 when it is missing, malformed, unknown or
    expired."""
    token = bearer_token(authorization)
    if not token:
        raise Unauthorized("missing or malformed Authorization: Bearer <token> header")
    return get_backend(request).accounts.authenticate(token)


def _take_token(backend: Backend, bucket: Bucket, key: str) -> None:
    """Takes one token from rate-limit ``bucket`` of ``key``; 429 when it is empty."""
    settings = backend.settings.rate_limits
    if not settings.enabled:
        return
    config = getattr(settings, bucket)
    wait = backend.storage.limiter.acquire(
        f"{bucket}:{key}", config.capacity, config.refill_per_s, backend.ctx.clock.now()
    )
    if wait != 0:  # -1: a bucket that never refills is empty
        retry = wait if wait > 0 else 3_600.0
        raise RateLimited(
            f"too many {bucket} requests; retry in {math.ceil(retry)} s", retry_after=retry
        )


def _limited(bucket: Bucket) -> Callable[[Request, int], int]:
    """A dependency: the current user, after a token from their ``bucket``."""

    def dependency(request: Request, user_id: Annotated[int, Depends(current_user)]) -> int:
        _take_token(get_backend(request), bucket, str(user_id))
        return user_id

    return dependency


def _trusted(address: str, proxies: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def client_address(request: Request) -> str:
    """The address of the client behind the request: the peer, unless the peer is one of
    ``server.trusted_proxies``; then the right-most ``X-Forwarded-For`` entry that is not a
    trusted proxy (entries to its left were written by the client and may be forged)."""
    peer = request.client.host if request.client else "unknown"
    proxies = get_backend(request).settings.server.trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    chain = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(chain):
        if not _trusted(hop, proxies):
            return hop[:64]
    return chain[0][:64] if chain else peer


def auth_limited(request: Request) -> None:
    """Limits registration and login per client address (bucket ``auth``, shared by both: a
    registration answers whether a username is taken, so it is throttled like a login)."""
    _take_token(get_backend(request), "auth", client_address(request))


Writer = Annotated[int, Depends(_limited("writes"))]
Reader = Annotated[int, Depends(_limited("reads"))]
Uploader = Annotated[int, Depends(_limited("uploads"))]
