"""Rules more than one service applies. Services never import each other; they may import this
module (which imports no service)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, TypeVar

from serving.social.domain import (
    Conflict,
    Forbidden,
    IdempotencyKey,
    Media,
    NotFound,
    Post,
    Story,
    User,
)
from serving.social.storage.interfaces import MetadataTx


class _Authored(Protocol):
    @property
    def author_id(self) -> int: ...


A = TypeVar("A", bound=_Authored)


def owned_ready_media(tx: MetadataTx, owner_id: int, media_id: int) -> Media:
    """The media item ``media_id`` if ``owner_id`` owns it and it is ready to attach to a post
    or a story; otherwise 404 (missing or deleted), 403 (someone else's) or 409 (still
    processing, or failed: the reason is repeated)."""
    media = tx.get_media(media_id)
    if media is None or media.status == "deleted":
        raise NotFound(f"media {media_id} not found", field="media_id")
    if media.owner_id != owner_id:
        raise Forbidden(f"media {media_id} belongs to another user", field="media_id")
    if media.status != "ready":
        detail = f": {media.reason}" if media.status == "failed" else ""
        raise Conflict(
            f"media {media_id} is {media.status}{detail}; attach it once ready", field="media_id"
        )
    return media


def authored_by(item: A | None, user_id: int, kind: str, item_id: int, forbidden: str) -> A:
    """``item`` (a post or story looked up as ``kind`` ``item_id``) if ``user_id`` wrote it;
    otherwise 404 (missing) or 403 with the message ``forbidden`` (someone else's)."""
    if item is None:
        raise NotFound(f"{kind} {item_id} not found", field=f"{kind}_id")
    if item.author_id != user_id:
        raise Forbidden(forbidden, field=f"{kind}_id")
    return item


def existing_user(tx: MetadataTx, user_id: int) -> User:
    """The user ``user_id``; 404 (field ``user_id``) if there is none."""
    user = tx.get_user(user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found", field="user_id")
    return user


def visible_post(tx: MetadataTx, viewer_id: int, post_id: int) -> Post:
    """The post ``post_id`` as ``viewer_id`` may see it: 404 when it is missing or when its
    author and the viewer blocked one another (a block hides the post as if it did not exist)."""
    post = tx.get_post(post_id)
    if post is None or post.author_id in tx.blocked_either_way(viewer_id):
        raise NotFound(f"post {post_id} not found", field="post_id")
    return post


def story_visible(tx: MetadataTx, viewer_id: int, story: Story, now: float) -> bool:
    """Whether ``viewer_id`` may see ``story``: it is active (``expires_at > now``) and the
    viewer is its author, or follows the author and neither blocked the other."""
    if story.expires_at <= now:
        return False
    if story.author_id == viewer_id:
        return True
    return story.author_id not in tx.blocked_either_way(viewer_id) and tx.is_following(
        viewer_id, story.author_id
    )


def media_visible(tx: MetadataTx, viewer_id: int, media: Media, now: float) -> bool:
    """Whether ``viewer_id`` may see media item ``media``: its owner always (until deleted);
    anyone else only a ready item shown by something they may see: a live post whose author
    and the viewer did not block one another, or an active story under :func:`story_visible`.
    Media of a deleted post, an expired story, or attached to nothing is its owner's alone."""
    if media.status == "deleted":
        return False
    if media.owner_id == viewer_id:
        return True
    if media.status != "ready":
        return False
    posts = tx.posts_with_media(media.id)
    if posts and any(p.author_id not in tx.blocked_either_way(viewer_id) for p in posts):
        return True
    return any(story_visible(tx, viewer_id, st, now) for st in tx.stories_with_media(media.id))


def replayed(
    tx: MetadataTx, key: IdempotencyKey | None, scope: str, request: Any, now: float
) -> dict[str, Any] | None:
    """The first answer to a write retried with the same ``Idempotency-Key``, or None when
    there is no key or it is new (then this transaction takes it: call :func:`remember` with the
    answer before it commits). ``scope`` names the write (``posts.create``) and ``request`` its
    input (JSON-able); the same key sent with another write or other input is a 409 (field
    ``Idempotency-Key``), never a silent replay of something else."""
    if key is None:
        return None
    encoded = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
    fingerprint = hashlib.sha256(encoded).hexdigest()
    prior = tx.claim_idempotency_key(key, scope, fingerprint, now)
    if prior is None:
        return None
    if prior.scope != scope or prior.fingerprint != fingerprint:
        raise Conflict(
            "this Idempotency-Key was used with a different request", field="Idempotency-Key"
        )
    return json.loads(prior.response)


def remember(tx: MetadataTx, key: IdempotencyKey | None, answer: dict[str, Any]) -> dict[str, Any]:
    """Stores ``answer`` under ``key`` (taken by :func:`replayed` in this transaction, so both
    commit together or not at all); returns ``answer``."""
    if key is not None:
        tx.store_idempotent_answer(key, json.dumps(answer, separators=(",", ":")))
    return answer
