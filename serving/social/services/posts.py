"""Posts: create and delete (author only), read one post or an author's posts.

A new or deleted post reaches the fanout worker through the outbox (stream ``posts``): the post
row and its event commit in one transaction, so a crash between the two cannot lose the push.
"""

from __future__ import annotations

import re
from typing import Any

from serving.social.context import Context
from serving.social.domain import BadRequest, Event, IdempotencyKey, NotFound, Post
from serving.social.services.shared import (
    authored_by,
    existing_user,
    owned_ready_media,
    remember,
    replayed,
    visible_post,
)
from serving.social.views import post_views

MAX_CAPTION = 2_200
TOPIC = re.compile(r"^[a-z0-9_]{0,32}$")


class PostService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def create(
        self,
        author_id: int,
        caption: str = "",
        media_id: int | None = None,
        topic: str = "",
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> dict[str, Any]:
        """A new post by ``author_id``; attached media must be the author's own and ready. A
        retry with the same ``idempotency`` key answers the first post again."""
        if len(caption) > MAX_CAPTION:
            raise BadRequest(f"caption longer than {MAX_CAPTION} characters", field="caption")
        if not TOPIC.match(topic):
            raise BadRequest("topic must be at most 32 characters of a-z, 0-9 and _", field="topic")
        if not caption.strip() and media_id is None:
            raise BadRequest("a post needs a caption or a media_id", field="caption")
        now = self.ctx.clock.now()
        request = {"caption": caption, "media_id": media_id, "topic": topic}
        with self.ctx.storage.metadata.transaction() as tx:
            prior = replayed(tx, idempotency, "posts.create", request, now)
            if prior is not None:
                return prior
            media_type = "text"
            if media_id is not None:
                media_type = owned_ready_media(tx, author_id, media_id).kind
            post = tx.create_post(
                author_id,
                now,
                caption=caption,
                media_id=media_id,
                media_type=media_type,
                topic=topic,
            )
            tx.add_outbox(
                Event(
                    stream="posts",
                    kind="post.created",
                    payload={"post_id": post.id, "author_id": author_id},
                    ts=now,
                )
            )
            tx.touch_user(author_id, now)
            return remember(tx, idempotency, post_views(tx, [post], self.ctx.urls)[0])

    def delete(self, user_id: int, post_id: int) -> None:
        """Soft-deletes the caller's own post; the fanout worker removes it from timelines and
        every read filters deleted posts out meanwhile."""
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            authored_by(
                tx.get_post(post_id), user_id, "post", post_id, "only the author can delete a post"
            )
            if tx.delete_post(post_id, now):
                tx.add_outbox(
                    Event(
                        stream="posts",
                        kind="post.deleted",
                        payload={"post_id": post_id, "author_id": user_id},
                        ts=now,
                    )
                )

    def get(self, viewer_id: int, post_id: int) -> dict[str, Any]:
        with self.ctx.storage.metadata.transaction() as tx:
            return post_views(tx, [visible_post(tx, viewer_id, post_id)], self.ctx.urls)[0]

    def by_author(
        self, viewer_id: int, author_id: int, limit: int, before_id: int | None = None
    ) -> dict[str, Any]:
        """An author's live posts, newest first, with a keyset cursor (the last post id)."""
        with self.ctx.storage.metadata.transaction() as tx:
            existing_user(tx, author_id)
            if author_id in tx.blocked_either_way(viewer_id):
                raise NotFound(f"user {author_id} not found", field="user_id")
            posts: list[Post] = tx.recent_posts([author_id], limit + 1, before_id=before_id)
            page = posts[:limit]
            return {
                "items": post_views(tx, page, self.ctx.urls),
                "next_cursor": str(page[-1].id) if len(posts) > limit else None,
            }
