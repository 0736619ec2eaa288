"""Hybrid fanout: the consumer of streams ``posts`` and ``graph`` that keeps pushed timelines.

* ``post.created``: an author below ``fanout.threshold`` followers has the post pushed into every
  *active* follower's timeline (batches of ``fanout.batch_size``) and into their own. Followers
  idle for ``fanout.inactive_after_days`` get no push; their timeline is dropped instead and
  rebuilt from the database on their next read. An author at or above the threshold (a
  celebrity) is pushed to nobody but themself: their posts are pulled at read time.
* ``post.deleted``: removed from the author's and every follower's timeline.
* ``follow.created``: the followee's recent posts are backfilled (unless they are pulled).
* ``follow.removed`` / ``block.created``: the other user's posts leave the timeline(s).

Every step is idempotent (timelines are sets keyed by post id; removals of absent ids are
no-ops), so a message delivered twice, or a batch replayed after a worker died half-way through
it, leaves the same timelines as one clean delivery. The feed also filters at read time (live
posts by followees or self, no blocks), so a push that lands late is never shown wrongly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from serving.social.context import Context
from serving.social.domain import Event

log = logging.getLogger(__name__)

STREAMS = ("posts", "graph")
GROUP = "fanout"


class FanoutService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Applies one event; unknown kinds are logged and ignored (newer producers)."""
        p = event.payload
        match event.kind:
            case "post.created":
                self.on_post_created(int(p["post_id"]), int(p["author_id"]))
            case "post.deleted":
                self.on_post_deleted(int(p["post_id"]), int(p["author_id"]))
            case "follow.created":
                self.on_follow(int(p["follower"]), int(p["followee"]))
            case "follow.removed":
                self.on_unfollow(int(p["follower"]), int(p["followee"]))
            case "block.created":
                self.on_unfollow(int(p["blocker"]), int(p["blocked"]))
                self.on_unfollow(int(p["blocked"]), int(p["blocker"]))
            case _:
                log.warning("fanout: ignoring event kind %r (id %s)", event.kind, event.id)

    # --- handlers -----------------------------------------------------------------------------

    def on_post_created(self, post_id: int, author_id: int) -> int:
        """Pushes the post; returns the number of timelines written."""
        settings = self.ctx.settings.fanout
        timelines = self.ctx.storage.timelines
        with self.ctx.storage.metadata.transaction() as tx:
            post = tx.get_post(post_id)
            if post is None:  # deleted before the worker got to it: nothing to push
                return 0
            celebrity = tx.follower_count(author_id) >= settings.threshold
        timelines.push(post_id, [author_id])
        if celebrity:
            return 1
        written = 1
        inactive_before = self.ctx.clock.now() - settings.inactive_after_days * 86_400
        for page in self._follower_pages(author_id):
            active = [f for f, last_active in page if last_active >= inactive_before]
            idle = [f for f, last_active in page if last_active < inactive_before]
            if active:
                timelines.push(post_id, active)
                written += len(active)
            if idle:
                timelines.drop_many(idle)
        return written

    def on_post_deleted(self, post_id: int, author_id: int) -> None:
        timelines = self.ctx.storage.timelines
        timelines.remove([author_id], [post_id])
        for page in self._follower_pages(author_id):
            timelines.remove([f for f, _ in page], [post_id])

    def on_follow(self, follower_id: int, followee_id: int) -> None:
        settings = self.ctx.settings.fanout
        timelines = self.ctx.storage.timelines
        if not timelines.is_built(follower_id):
            return  # built from the database, followee included, on the next read
        with self.ctx.storage.metadata.transaction() as tx:
            if not tx.is_following(follower_id, followee_id):
                return  # unfollowed again before this event was handled
            if tx.follower_count(followee_id) >= settings.threshold:
                return  # a celebrity: pulled at read time
            posts = tx.recent_posts([followee_id], settings.backfill_posts)
        if posts:
            timelines.push_many(follower_id, [p.id for p in posts])

    def on_unfollow(self, follower_id: int, followee_id: int) -> None:
        """Removes the followee's posts from the follower's timeline. A timeline holds only its
        newest ``cap`` entries, so any of the followee's posts in it is among their newest
        ``cap`` posts: removing those is complete."""
        timelines = self.ctx.storage.timelines
        with self.ctx.storage.metadata.transaction() as tx:
            if tx.is_following(follower_id, followee_id):
                return  # followed again since: keep
            posts = tx.recent_posts([followee_id], timelines.cap)
        if posts:
            timelines.remove([follower_id], [p.id for p in posts])

    # --- helpers ------------------------------------------------------------------------------

    def _follower_pages(self, user_id: int) -> Iterator[list[tuple[int, float]]]:
        """The user's followers as ``(id, last_active_at)`` pages of ``fanout.batch_size``."""
        size = self.ctx.settings.fanout.batch_size
        after = 0
        while True:
            with self.ctx.storage.metadata.transaction() as tx:
                page = tx.followers_page(user_id, after, size)
            if not page:
                return
            yield page
            if len(page) < size:
                return
            after = page[-1][0]
