"""Read models shared by the services: the JSON shape of a post, a media item and a story as the
API returns them. Pure functions over records already loaded (no storage access of their own
beyond the transaction they are given); rendition URLs are signed by the
:class:`~serving.social.blobsign.BlobSigner` they are given, so a URL exists only where a read
that applied the visibility rules produced it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from serving.social.blobsign import BlobSigner
from serving.social.domain import Media, Post, User
from serving.social.storage.interfaces import MetadataTx


def media_view(media: Media, urls: BlobSigner) -> dict[str, Any]:
    """The media item as the API shows it; a ready item's renditions carry signed URLs."""
    view: dict[str, Any] = {
        "id": media.id,
        "kind": media.kind,
        "status": media.status,
        "content_type": media.content_type,
        "created_at": media.created_at,
        "updated_at": media.updated_at,
    }
    if media.status == "failed":
        view["reason"] = media.reason
    if media.status == "ready":
        view.update(
            width=media.width,
            height=media.height,
            thumbhash=media.thumbhash,
            renditions={
                r.name: {
                    "url": urls.url(r.blob_key),
                    "content_type": r.content_type,
                    "width": r.width,
                    "height": r.height,
                    "bytes": r.size_bytes,
                }
                for r in media.renditions
            },
        )
        if media.reason:  # notes on a ready item (e.g. an optional encoder was missing)
            view["notes"] = media.reason
    return view


def post_views(tx: MetadataTx, posts: Sequence[Post], urls: BlobSigner) -> list[dict[str, Any]]:
    """Posts with their author, media (URLs signed by ``urls``) and counts, in the order given."""
    if not posts:
        return []
    authors: dict[int, User] = tx.get_users(sorted({p.author_id for p in posts}))
    counts = tx.post_counts([p.id for p in posts])
    media: dict[int, Media] = tx.get_media_many(
        sorted({p.media_id for p in posts if p.media_id is not None})
    )
    views = []
    for post in posts:
        author = authors.get(post.author_id)
        view: dict[str, Any] = {
            "id": post.id,
            "author": {"id": post.author_id, "username": author.username if author else None},
            "created_at": post.created_at,
            "caption": post.caption,
            "topic": post.topic,
            "media_type": post.media_type,
            "counts": counts.get(post.id, {"likes": 0, "comments": 0, "saves": 0}),
        }
        if post.media_id is not None and post.media_id in media:
            view["media"] = media_view(media[post.media_id], urls)
        views.append(view)
    return views
