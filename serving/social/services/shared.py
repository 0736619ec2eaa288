"""Rules more than one service applies. Services never import each other; they may import this
module (which imports no service)."""

from __future__ import annotations

from typing import Protocol, TypeVar

from serving.social.domain import Conflict, Forbidden, Media, NotFound, Post, User
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
