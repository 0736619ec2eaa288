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
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from serving.social.backend import Backend
from serving.social.domain import MAX_ID, IdempotencyKey, RateLimited, Unauthorized

__all__ = [
    "NON_BLANK",
    "WHOLE",
    "BackendDep",
    "BeforeIdCursor",
    "Body",
    "BodyId",
    "FeedCursor",
    "FeedLimit",
    "Id",
    "IdempotencyHeader",
    "NonBlankText",
    "OffsetCursor",
    "PageLimit",
    "Reader",
    "Text",
    "Uploader",
    "Writer",
    "auth_limited",
    "bearer_scheme",
    "client_address",
    "current_token",
    "current_user",
    "error_responses",
    "get_backend",
    "idempotency",
]

_INT64 = {"format": "int64"}

#: A path id: a positive integer up to :data:`~serving.social.domain.MAX_ID` (larger ones are a
#: 422, not a driver overflow).
Id = Annotated[int, Path(ge=1, le=MAX_ID, json_schema_extra=_INT64)]

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
    Field(
        json_schema_extra={"pattern": "^[^\\u0000]*$"},
        description="no NUL characters, no lone surrogates",
    ),
]


def _non_blank(value: str) -> str:
    if not _NON_BLANK.search(value):
        raise ValueError("must contain a character that is not whitespace")
    return value


_NON_BLANK = re.compile(r"\S")

#: The pattern of a string with a character that is not whitespace (Python's ``str.isspace``,
#: as the services strip text), published for :data:`NonBlankText`.
NON_BLANK = _NON_BLANK.pattern

#: :data:`Text` with at least one character that is not whitespace.
NonBlankText = Annotated[
    Text, AfterValidator(_non_blank), Field(json_schema_extra={"pattern": NON_BLANK})
]


def _whole_number(value: Any) -> Any:
    """1.0 is the JSON number 1 (a JSON Schema integer); booleans and strings stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Metadata of an integer of a JSON body: strict (no booleans, no strings) but whole floats
#: accepted; ``Field`` constraints go before it, e.g. ``Annotated[int, Field(ge=0), WHOLE]``.
WHOLE = BeforeValidator(_whole_number)

#: An id in a JSON body (same bounds as :data:`Id`).
BodyId = Annotated[int, Field(ge=1, le=MAX_ID, json_schema_extra=_INT64), WHOLE]


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
BeforeIdCursor = Annotated[int | None, Query(ge=1, le=MAX_ID, json_schema_extra=_INT64)]
#: Cursor that counts from 0 (a post's comments).
OffsetCursor = Annotated[int, Query(ge=0, le=MAX_ID, json_schema_extra=_INT64)]
#: Page size of the home feed (default ``feed.page_size``; the bound published is the default
#: ``feed.max_page_size``, a deployment that lowers it answers 400 above its own).
FeedLimit = Annotated[int | None, Query(ge=1, le=100)]
#: The feed's opaque cursor, as the previous page returned it (``c<post id>`` on a
#: chronological feed, ``r<session>.<offset>`` on a ranked one).
FeedCursor = Annotated[
    str | None, Query(max_length=64, pattern=r"^(c[0-9]{1,15}|r[A-Za-z0-9_-]{1,32}\.[0-9]{1,9})$")
]


class FieldError(BaseModel):
    loc: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. not_found, rate_limited")
    message: str
    field: str | None = Field(None, description="the request parameter or body field at fault")
    fields: list[FieldError] | None = Field(None, description="every invalid field (422)")


class ErrorBody(BaseModel):
    """The one error format of every answer that is not a success."""

    error: ErrorDetail


_ERRORS: dict[int, str] = {
    400: "the request is malformed or breaks a rule (the message says which)",
    401: "missing, malformed, unknown or expired bearer token",
    403: "not yours (or a blob URL whose signature is missing, wrong or expired)",
    404: "not found, or not visible to the caller",
    405: "method not allowed (the Allow header lists the ones that are)",
    409: "conflicts with the current state (or an Idempotency-Key reused for another request)",
    410: "the feed session of this cursor expired",
    413: "upload too large",
    415: "unsupported media type",
    422: "invalid parameters or body (every invalid field listed)",
    429: "rate limited: retry after Retry-After seconds",
    500: "unexpected error (logged; reveals nothing)",
    503: "a dependency is down: retry after Retry-After seconds",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of ``codes`` (plus 500), each with :class:`ErrorBody`."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, 500}):
        entry: dict[str, Any] = {"model": ErrorBody, "description": _ERRORS[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        documented[code] = entry
    return documented


#: The rate-limit buckets (``rate_limits.<bucket>`` settings).
Bucket = Literal["reads", "writes", "uploads", "auth"]


def get_backend(request: Request) -> Backend:
    """The backend (storage, services, settings) that serves this app."""
    return request.app.state.backend


BackendDep = Annotated[Backend, Depends(get_backend)]


#: The security scheme of the OpenAPI document: ``Authorization: Bearer <token>`` (the token
#: that register and login answer). Checked by :func:`current_user` (401 when absent).
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="opaque",
    description="the token of POST /v1/auth/register or /v1/auth/login",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def current_token(credentials: Credentials) -> str:
    """The request's bearer token; 401 when it is missing or malformed."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Unauthorized("missing or malformed Authorization: Bearer <token> header")
    return token


def current_user(request: Request, token: Annotated[str, Depends(current_token)]) -> int:
    """The user id of the request's bearer token; 401 when it is missing, malformed, unknown or
    expired."""
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
