"""The storage interfaces every service is written against, and that each adapter implements
twice: embedded (SQLite file + local blob folder) and production (PostgreSQL + Redis).

=================  ===============================  ==========================================
interface          embedded                         production
=================  ===============================  ==========================================
MetadataStore      SQLite via SQLAlchemy            PostgreSQL via SQLAlchemy (Alembic schema)
  (incl. outbox)
TimelineStore      SQLite table                     Redis sorted sets
StoryCache         SQLite tables                    Redis sorted sets and sets
KeyValueCache      SQLite table with expiry         Redis strings with TTL
RateLimiter        SQLite token buckets             Redis token buckets (one Lua script)
EventBus           SQLite tables (groups, pending)  Redis Streams with consumer groups
BlobStore          local content-addressed files    the same (an object store maps here)
=================  ===============================  ==========================================

Cassandra, which the design uses for timelines, maps to :class:`TimelineStore`.

Every method is synchronous and safe to call from several threads (FastAPI runs plain ``def``
endpoints in a thread pool; workers run in threads or processes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol, TypedDict, Unpack

from serving.social.domain import (
    Comment,
    Event,
    FollowChange,
    IdempotencyKey,
    IdempotentAnswer,
    InteractionEvent,
    Media,
    MediaStatus,
    Message,
    Post,
    PostMediaType,
    Rendition,
    Story,
    User,
)


class PostFields(TypedDict, total=False):
    """The optional fields of :meth:`MetadataTx.create_post` (defaults: those of :class:`Post`)."""

    caption: str
    media_id: int | None
    media_type: PostMediaType
    topic: str


class MediaChanges(TypedDict, total=False):
    """What :meth:`MetadataTx.update_media` may change besides the status."""

    reason: str | None
    width: int | None
    height: int | None
    thumbhash: str | None
    renditions: Sequence[Rendition]


class MetadataTx(Protocol):
    """One database transaction: everything done through it commits together or not at all.
    Writes that other services must hear of add an :class:`Event` with :meth:`add_outbox` in the
    same transaction (the transactional outbox)."""

    # users and tokens
    def create_user(
        self, username: str, password_hash: str, now: float, country: str = "", age_bucket: str = ""
    ) -> User:
        """Raises :class:`~serving.social.domain.Conflict` (field ``username``) if taken."""
        ...

    def get_user(self, user_id: int) -> User | None: ...

    def get_users(self, user_ids: Sequence[int]) -> dict[int, User]: ...

    def user_credentials(self, username: str) -> tuple[User, str] | None:
        """The user and their stored password hash."""
        ...

    def touch_user(self, user_id: int, now: float) -> None:
        """Sets ``last_active_at``."""
        ...

    def add_token(
        self, user_id: int, token_hash: str, created_at: float, expires_at: float
    ) -> None: ...

    def user_for_token(self, token_hash: str, now: float) -> int | None:
        """The user id of an unexpired, unrevoked token hash."""
        ...

    def revoke_token(self, token_hash: str) -> bool: ...

    # follows and blocks
    def add_follow(self, follower_id: int, followee_id: int, now: float) -> bool:
        """True if created, False if it existed."""
        ...

    def remove_follow(self, follower_id: int, followee_id: int, now: float | None = None) -> bool:
        """True if removed. Follows and removals are logged (:meth:`MetadataStore.iter_follow_log`)
        at their time (``now``; default: the wall clock)."""
        ...

    def is_following(self, follower_id: int, followee_id: int) -> bool: ...

    def follower_count(self, user_id: int) -> int: ...

    def followee_count(self, user_id: int) -> int: ...

    def follower_counts(self, user_ids: Sequence[int]) -> dict[int, int]:
        """Follower count of each of ``user_ids`` (0 included) in one query."""
        ...

    def followers_page(self, user_id: int, after_id: int, limit: int) -> list[tuple[int, float]]:
        """``(follower_id, last_active_at)`` with follower_id > after_id, ascending, <= limit."""
        ...

    def followees(self, user_id: int) -> list[int]: ...

    def add_block(self, blocker_id: int, blocked_id: int, now: float) -> bool: ...

    def remove_block(self, blocker_id: int, blocked_id: int) -> bool: ...

    def blocked_either_way(self, user_id: int) -> set[int]:
        """Ids of users this user blocked or was blocked by."""
        ...

    # posts
    def create_post(self, author_id: int, now: float, **fields: Unpack[PostFields]) -> Post:
        """A new post; the fields not given get the defaults of :class:`Post`."""
        ...

    def get_post(self, post_id: int, include_deleted: bool = False) -> Post | None: ...

    def get_posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        """The live (not deleted) ones among ``post_ids``."""
        ...

    def delete_post(self, post_id: int, now: float) -> bool:
        """Soft delete (sets ``deleted_at``); False if missing or already deleted."""
        ...

    def recent_posts(
        self, author_ids: Sequence[int], limit_per_author: int, before_id: int | None = None
    ) -> list[Post]:
        """Each author's newest live posts (id < before_id when given), newest first overall."""
        ...

    def posts_with_media(self, media_id: int) -> list[Post]:
        """The live posts showing media item ``media_id``, oldest first."""
        ...

    # media
    def create_media(
        self, owner_id: int, kind: str, content_type: str, raw_key: str | None, now: float
    ) -> Media:
        """A new media row with status ``processing``."""
        ...

    def get_media(self, media_id: int) -> Media | None: ...

    def get_media_many(self, media_ids: Sequence[int]) -> dict[int, Media]: ...

    def update_media(
        self, media_id: int, status: MediaStatus, now: float, **changes: Unpack[MediaChanges]
    ) -> None:
        """Sets status and ``updated_at``, and each of ``changes`` that is not None (nor, for
        ``renditions``, empty)."""
        ...

    def mark_media_for_deletion(self, media_ids: Sequence[int], delete_after: float) -> None: ...

    # stories
    def create_story(
        self, author_id: int, media_id: int, now: float, expires_at: float
    ) -> Story: ...

    def get_story(self, story_id: int) -> Story | None: ...

    def active_stories(self, author_ids: Sequence[int], now: float) -> list[Story]:
        """Stories with ``expires_at > now`` (strictly), oldest first."""
        ...

    def stories_with_media(self, media_id: int) -> list[Story]:
        """The stories (expired or not) showing media item ``media_id``, oldest first."""
        ...

    def active_stories_page(self, now: float, after_id: int, limit: int) -> list[Story]:
        """Every author's stories with ``expires_at > now`` and id > ``after_id``, by id, at
        most ``limit``."""
        ...

    def expired_uncleaned_stories(self, now: float, limit: int) -> list[Story]:
        """Stories with ``expires_at <= now`` not yet passed to :meth:`mark_stories_cleaned`."""
        ...

    def mark_stories_cleaned(self, story_ids: Sequence[int], now: float) -> None: ...

    def record_story_view(self, story_id: int, viewer_id: int, now: float) -> bool:
        """Unique per (story, viewer): True the first time only."""
        ...

    def story_viewers(self, story_id: int) -> list[tuple[int, float]]:
        """``(viewer_id, viewed_at)``, earliest first."""
        ...

    def seen_stories(self, viewer_id: int, story_ids: Sequence[int]) -> set[int]: ...

    # interactions
    def add_like(self, user_id: int, post_id: int, now: float) -> bool: ...

    def remove_like(self, user_id: int, post_id: int) -> bool: ...

    def add_save(self, user_id: int, post_id: int, now: float) -> bool: ...

    def remove_save(self, user_id: int, post_id: int) -> bool: ...

    def add_comment(self, user_id: int, post_id: int, text: str, now: float) -> Comment: ...

    def comments(self, post_id: int, after_id: int, limit: int) -> list[Comment]: ...

    def post_counts(self, post_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """``{post_id: {"likes": n, "comments": n, "saves": n}}``."""
        ...

    def append_events(self, events: Sequence[InteractionEvent]) -> int:
        """Appends to the event log, skipping event ids already there; returns rows added."""
        ...

    # outbox
    def add_outbox(self, event: Event) -> None: ...

    # idempotency keys of writes
    def claim_idempotency_key(
        self, key: IdempotencyKey, scope: str, fingerprint: str, now: float
    ) -> IdempotentAnswer | None:
        """None when ``key`` is new (now taken by this transaction; a concurrent transaction
        with the same key waits for this one), else the answer a committed write stored."""
        ...

    def store_idempotent_answer(self, key: IdempotencyKey, response: str) -> None: ...

    def purge_idempotency_keys(self, before: float, limit: int = 10_000) -> int:
        """Deletes up to ``limit`` keys created before ``before``; returns how many."""
        ...


class MetadataStore(Protocol):
    def transaction(self) -> AbstractContextManager[MetadataTx]:
        """Commits on normal exit, rolls back on an exception (which propagates)."""
        ...

    def reading(self) -> AbstractContextManager[MetadataTx]:
        """For reads only (writing through it is an error): no transaction round trips where
        the database allows (PostgreSQL autocommit), no write lock (SQLite). Each statement
        sees committed data; use :meth:`transaction` when reads must agree with each other."""
        ...

    def relay_outbox(self, publish: Callable[[Event], object], limit: int = 500) -> int:
        """Publishes up to ``limit`` unpublished outbox events in commit order, marking them
        published in the same transaction (rows locked with SKIP LOCKED on PostgreSQL, so
        relays can run side by side). A crash between publish and commit re-publishes:
        delivery is at-least-once and consumers are idempotent. Returns the count published."""
        ...

    def iter_events(
        self, after_seq: int = 0, batch: int = 10_000
    ) -> Iterator[list[InteractionEvent]]:
        """The event log in ``seq`` order, in batches."""
        ...

    def wait_for_outbox(self, timeout_s: float, seen: int | None = None) -> int:
        """Waits up to ``timeout_s`` for an outbox event committed in this process after the
        count ``seen`` (default: now); returns the current count (a relay's idle wait)."""
        ...

    def iter_follow_log(
        self, after_seq: int = 0, batch: int = 10_000
    ) -> Iterator[list[FollowChange]]:
        """Every follow and unfollow (:class:`FollowChange`) in ``seq`` order, in batches."""
        ...

    def check(self) -> None:
        """Raises if the database is unreachable or its schema is not at the latest migration."""
        ...

    def close(self) -> None: ...


class TimelineStore(Protocol):
    """Pushed timelines: per owner, post ids scored by post id (newest = largest), capped."""

    cap: int

    def push(self, post_id: int, owner_ids: Sequence[int]) -> None:
        """Adds one post to many timelines and trims each to ``cap`` (idempotent)."""
        ...

    def push_many(self, owner_id: int, post_ids: Sequence[int]) -> None:
        """Adds many posts to one timeline (backfill) and trims it (idempotent)."""
        ...

    def remove(self, owner_ids: Sequence[int], post_ids: Sequence[int]) -> None: ...

    def page(self, owner_id: int, limit: int, before_id: int | None = None) -> list[int]:
        """Post ids < before_id (all when None), newest first, at most ``limit``."""
        ...

    def is_built(self, owner_id: int) -> bool:
        """Whether the owner's timeline was built (by :meth:`mark_built`) and not dropped."""
        ...

    def mark_built(self, owner_id: int) -> None: ...

    def drop(self, owner_id: int) -> None:
        """Removes the timeline and its built mark (an inactive user's is rebuilt on read)."""
        ...

    def drop_many(self, owner_ids: Sequence[int]) -> None:
        """:meth:`drop` for many owners at once (one round trip / one statement)."""
        ...


class StoryCache(Protocol):
    """Active-story trays: per author the live story ids with their expiry, a cache of the
    metadata store's stories (rebuilt from it when lost: :meth:`is_built`). Reads filter on
    ``expires_at > now`` themselves."""

    def add(self, story: Story) -> None: ...

    def remove(self, stories: Sequence[Story]) -> None: ...

    def active(
        self, author_ids: Sequence[int], now: float
    ) -> dict[int, list[tuple[int, float, float]]]:
        """``{author: [(story_id, created_at, expires_at), ...]}`` oldest first, only for authors
        that have at least one active story."""
        ...

    def is_built(self) -> bool:
        """False when the trays may have lost entries (a Redis restart or flush) and must be
        rebuilt from the metadata store before they are read."""
        ...

    def mark_built(self) -> None: ...


class KeyValueCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def delete(self, key: str) -> None: ...


class RateLimiter(Protocol):
    def acquire(
        self, key: str, capacity: float, refill_per_s: float, now: float, cost: float = 1.0
    ) -> float:
        """Token bucket: takes ``cost`` tokens and returns 0.0, or takes nothing and returns the
        seconds until ``cost`` tokens will be there. A new bucket starts full."""
        ...


class EventBus(Protocol):
    """Durable streams with consumer groups: every group sees every message once unless a
    consumer dies before acking, in which case :meth:`reclaim` hands the message to another."""

    def publish(self, event: Event) -> str:
        """Appends to stream ``event.stream``; returns the bus message id."""
        ...

    def ensure_group(self, stream: str, group: str) -> None:
        """Creates the group (reading from the stream's start) if missing."""
        ...

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int = 0
    ) -> list[Message]:
        """New messages for this group, now pending on ``consumer`` until acked."""
        ...

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> None: ...

    def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Message]:
        """Pending messages idle for at least ``min_idle_ms`` (their consumer presumably died),
        now pending on ``consumer``; ``deliveries`` is incremented."""
        ...

    def pending_count(self, stream: str, group: str) -> int: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """Content-addressed blobs: the key is the SHA-256 of the bytes, so equal content is stored
    once and a key never changes meaning (safe to cache forever)."""

    def put(self, data: bytes) -> str: ...

    def put_file(self, path: Path) -> str: ...

    def put_stream(self, source: BinaryIO) -> str:
        """Stores ``source`` from its position to its end, in chunks; returns the key."""
        ...

    def get(self, key: str) -> bytes:
        """Raises :class:`~serving.social.domain.NotFound` for an unknown key."""
        ...

    def path(self, key: str) -> Path:
        """Local path of an existing blob (served with ``FileResponse``)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool: ...

    def keys(self) -> Iterable[str]: ...
