"""Records the backend's services and storage adapters exchange, and the errors they raise.

Ids are integers assigned by the metadata store in creation order (``INTEGER PRIMARY KEY`` in
SQLite, ``BIGSERIAL`` in PostgreSQL), so a larger post id is a newer post: timelines use the post
id as their sort score (exact in a float64 up to 2**53) and cursors are post ids. Times are unix
seconds (float) read from the backend's :class:`~serving.social.clock.Clock`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

#: The largest id the API accepts: 2**53 - 1, the largest integer a float64 holds exactly (ids
#: are timeline scores, and JSON clients read numbers as float64), far inside the stores'
#: BIGINT. The published contract says so exactly, where 2**63 - 1 would read as 2**63.
MAX_ID = 2**53 - 1

MediaKind = Literal["image", "video"]
MediaStatus = Literal["processing", "ready", "failed", "deleted"]
PostMediaType = Literal["text", "image", "video"]
InteractionKind = Literal["impression", "like", "comment", "share", "save"]


# --- errors: each maps to one HTTP status in serving.social.api ---------------------------------


class BackendError(Exception):
    """Base of the errors a service raises on purpose; ``field`` names the offending input."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(BackendError):
    status, code = 400, "bad_request"


class Unauthorized(BackendError):
    status, code = 401, "unauthorized"


class Forbidden(BackendError):
    status, code = 403, "forbidden"


class NotFound(BackendError):
    status, code = 404, "not_found"


class Conflict(BackendError):
    status, code = 409, "conflict"


class CursorExpired(BackendError):
    """A paging cursor whose session is gone (start again without a cursor)."""

    status, code = 410, "cursor_expired"


class PayloadTooLarge(BackendError):
    status, code = 413, "payload_too_large"


class UnsupportedMedia(BackendError):
    status, code = 415, "unsupported_media_type"


class RetryLater(BackendError):
    """An error the same request may not get ``retry_after`` seconds later (the API sends that
    as ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    status, code = 429, "rate_limited"


class Unavailable(RetryLater):
    """A dependency the request needs (Redis) is down."""

    status, code = 503, "unavailable"


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: int
    username: str
    created_at: float
    last_active_at: float
    country: str = ""
    age_bucket: str = ""


@dataclass(frozen=True)
class Post:
    id: int
    author_id: int
    created_at: float
    caption: str = ""
    media_id: int | None = None
    media_type: PostMediaType = "text"
    topic: str = ""
    deleted_at: float | None = None


@dataclass(frozen=True)
class Rendition:
    """One processed file of a media item: ``name`` is e.g. ``1440``, ``250``, ``h264``, ``av1``,
    ``poster``; ``blob_key`` addresses it in the blob store."""

    name: str
    blob_key: str
    content_type: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True)
class Media:
    id: int
    owner_id: int
    kind: MediaKind
    status: MediaStatus
    content_type: str
    created_at: float
    updated_at: float
    raw_key: str | None = None
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    thumbhash: str | None = None  # base64 of the ThumbHash bytes
    renditions: tuple[Rendition, ...] = ()
    delete_after: float | None = None  # set when marked for deletion (expired story media)


@dataclass(frozen=True)
class Story:
    id: int
    author_id: int
    media_id: int
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class Comment:
    id: int
    post_id: int
    user_id: int
    text: str
    created_at: float


@dataclass(frozen=True)
class InteractionEvent:
    """One row of the event log the rankers learn from. ``event_id`` makes appends idempotent
    (a re-delivered event is stored once); ``dwell_ms`` is set on impressions."""

    event_id: str
    kind: InteractionKind
    user_id: int
    post_id: int
    author_id: int
    ts: float
    dwell_ms: int | None = None
    seq: int | None = None  # assigned by the store on append


@dataclass(frozen=True)
class FollowChange:
    """One row of the follow log: ``follower_id`` started (``following``) or stopped following
    ``followee_id`` at ``ts``; ``seq`` orders changes of the same second."""

    seq: int
    follower_id: int
    followee_id: int
    following: bool
    ts: float


@dataclass(frozen=True)
class IdempotencyKey:
    """The ``Idempotency-Key`` a user sent with a write: a retry with the same key gets the
    first answer back and creates nothing."""

    user_id: int
    key: str


@dataclass(frozen=True)
class IdempotentAnswer:
    """What the store kept of the first write under an :class:`IdempotencyKey`: what the write
    was (``scope``, e.g. ``posts.create``), a hash of its input, and its answer (JSON)."""

    scope: str
    fingerprint: str
    response: str


@dataclass(frozen=True)
class Event:
    """A message between services: written to the outbox with the change it describes, relayed
    to the bus stream ``stream`` (``posts``, ``graph``, ``media``, ``stories``)."""

    stream: str
    kind: str  # e.g. post.created, post.deleted, follow.created, follow.removed, block.created
    payload: dict[str, Any]
    ts: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Message:
    """An event as read from a bus consumer group; ``id`` is the bus's own id (ack with it) and
    ``deliveries`` counts how often it was handed out (1 on first delivery)."""

    stream: str
    id: str
    event: Event
    deliveries: int = 1


def event_to_json(event: Event) -> bytes:
    """The wire form of an :class:`Event` on every bus and in the outbox (UTF-8 JSON)."""
    return json.dumps(
        {
            "id": event.id,
            "stream": event.stream,
            "kind": event.kind,
            "payload": event.payload,
            "ts": event.ts,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def event_from_json(data: bytes | str) -> Event:
    """Inverse of :func:`event_to_json`; raises ``ValueError`` naming what is missing."""
    raw = json.loads(data)
    missing = sorted({"id", "stream", "kind", "payload", "ts"} - set(raw))
    if missing:
        raise ValueError(f"event JSON lacks {missing}: {str(data)[:200]}")
    return Event(
        stream=raw["stream"], kind=raw["kind"], payload=raw["payload"], ts=raw["ts"], id=raw["id"]
    )
