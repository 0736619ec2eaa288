"""Rules more than one service applies. Services never import each other; they may import this
module (which imports no service)."""

from __future__ import annotations

from serving.social.domain import Conflict, Forbidden, Media, NotFound
from serving.social.storage.interfaces import MetadataTx


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
