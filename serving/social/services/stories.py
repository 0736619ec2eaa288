"""Stories: post, tray, view receipts, viewers, and the expiry cleanup job.

A story expires exactly ``stories.ttl_s`` (24 h) after it was posted. Every read filters on
``expires_at > now`` (strictly: at the boundary instant the story is gone), both in the tray
cache and in the database, so an expired story is never served however late the cleanup job
runs. The cleanup job removes expired stories from the tray cache and marks their media for
deletion ``stories.media_grace_s`` later (a purge or archive job acts on that mark).

The tray shows followed users with at least one active story: users with an unseen story
first, then by their latest story time, newest first. View receipts are unique per
(story, viewer) and are the seen marks (an author's own stories count as seen); only the
author may list a story's viewers.

The tray cache (Redis in production) is a cache of the ``stories`` table: rebuilt from it on
the first read, or by the cleanup job, after Redis lost its data, and bypassed for the table
itself while Redis is down.
"""

from __future__ import annotations

import contextlib
from typing import Any

from serving.social.context import Context
from serving.social.domain import Event, IdempotencyKey, NotFound, Story, Unavailable
from serving.social.services.shared import (
    authored_by,
    owned_ready_media,
    remember,
    replayed,
    story_visible,
)
from serving.social.views import media_view

STREAM = "stories"
GROUP = "stories"


class StoryService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- writes -------------------------------------------------------------------------------

    def post(
        self, author_id: int, media_id: int, *, idempotency: IdempotencyKey | None = None
    ) -> dict[str, Any]:
        """A new story; a retry with the same ``idempotency`` key answers the first again."""
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            prior = replayed(tx, idempotency, "stories.create", {"media_id": media_id}, now)
            if prior is not None:
                return prior
            media = owned_ready_media(tx, author_id, media_id)
            story = tx.create_story(author_id, media_id, now, now + self.ctx.settings.stories.ttl_s)
            # The tray cache is written below; the outbox event re-adds it (idempotently) if this
            # process dies between the commit and the cache write.
            tx.add_outbox(Event(STREAM, "story.created", _story_payload(story), ts=now))
            tx.touch_user(author_id, now)
            view = remember(tx, idempotency, self._story_view(story, media, seen=True))
        # Stored: while Redis is down, the outbox event adds it to the tray once Redis is back.
        with contextlib.suppress(Unavailable):
            self.ctx.storage.stories.add(story)
        return view

    def view(self, viewer_id: int, story_id: int) -> dict[str, Any]:
        """Records a unique view receipt; ``{"new": False}`` when already viewed."""
        story = self._visible_story(viewer_id, story_id)
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            new = (
                tx.record_story_view(story_id, viewer_id, now)
                if viewer_id != story.author_id
                else False
            )
        return {"story_id": story_id, "new": new}

    # --- reads --------------------------------------------------------------------------------

    def get(self, viewer_id: int, story_id: int) -> dict[str, Any]:
        story = self._visible_story(viewer_id, story_id)
        with self.ctx.storage.metadata.reading() as tx:
            media = tx.get_media(story.media_id)
            seen = story.author_id == viewer_id or bool(tx.seen_stories(viewer_id, [story_id]))
        return self._story_view(story, media, seen=seen)

    def tray(self, viewer_id: int) -> dict[str, Any]:
        """``{"own": [...], "items": [{"author": ..., "has_unseen": bool, "latest_at": t,
        "stories": [...]}, ...]}``."""
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.reading() as tx:
            blocked = tx.blocked_either_way(viewer_id)
            authors = [a for a in tx.followees(viewer_id) if a not in blocked]
        active = self._active([*authors, viewer_id], now)
        entries = {a: [s for s in stories if s[2] > now] for a, stories in active.items()}
        entries = {a: stories for a, stories in entries.items() if stories}
        story_ids = [s[0] for stories in entries.values() for s in stories]
        with self.ctx.storage.metadata.reading() as tx:
            seen = tx.seen_stories(viewer_id, story_ids) if story_ids else set()
            users = tx.get_users(sorted(entries))
        items = []
        for author, stories in entries.items():
            if author == viewer_id:
                continue
            items.append(
                {
                    "author": {"id": author, "username": _name(users, author)},
                    "has_unseen": any(s[0] not in seen for s in stories),
                    "latest_at": max(s[1] for s in stories),
                    "stories": [_tray_story(s, s[0] in seen) for s in stories],
                }
            )
        items.sort(key=lambda item: (not item["has_unseen"], -item["latest_at"]))
        own = [_tray_story(s, True) for s in entries.get(viewer_id, [])]
        return {"own": own, "items": items}

    def viewers(self, user_id: int, story_id: int) -> dict[str, Any]:
        """The viewers of the caller's own story (also after it expired), earliest first."""
        with self.ctx.storage.metadata.transaction() as tx:
            forbidden = "only the author sees who viewed a story"
            authored_by(tx.get_story(story_id), user_id, "story", story_id, forbidden)
            rows = tx.story_viewers(story_id)
            users = tx.get_users([v for v, _ in rows])
        return {
            "story_id": story_id,
            "count": len(rows),
            "viewers": [{"id": v, "username": _name(users, v), "viewed_at": t} for v, t in rows],
        }

    def _active(
        self, author_ids: list[int], now: float
    ) -> dict[int, list[tuple[int, float, float]]]:
        """The authors' active stories from the tray cache, rebuilt first when it lost its
        data; from the database itself while the cache is unavailable (Redis down)."""
        cache = self.ctx.storage.stories
        try:
            if not cache.is_built():
                self.rebuild_trays()
            return cache.active(author_ids, now)
        except Unavailable:
            with self.ctx.storage.metadata.reading() as tx:
                stories = tx.active_stories(author_ids, now)
            found: dict[int, list[tuple[int, float, float]]] = {}
            for story in stories:  # oldest first, as the cache returns them
                found.setdefault(story.author_id, []).append(
                    (story.id, story.created_at, story.expires_at)
                )
            return found

    def rebuild_trays(self, page: int = 1_000) -> int:
        """Adds every active story of the database to the tray cache, then marks it built;
        returns how many it added. Idempotent, safe beside writers (a story committed during
        the rebuild is added by its own write or by its outbox event)."""
        now = self.ctx.clock.now()
        cache = self.ctx.storage.stories
        added = after = 0
        while True:
            with self.ctx.storage.metadata.reading() as tx:
                stories = tx.active_stories_page(now, after, page)
            for story in stories:
                cache.add(story)
            added += len(stories)
            if len(stories) < page:
                break
            after = stories[-1].id
        cache.mark_built()
        return added

    # --- worker side --------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Consumer of stream ``stories``: (re-)adds a new story to the tray cache."""
        if event.kind == "story.created":
            p = event.payload
            story = Story(
                id=int(p["story_id"]),
                author_id=int(p["author_id"]),
                media_id=int(p["media_id"]),
                created_at=float(p["created_at"]),
                expires_at=float(p["expires_at"]),
            )
            if story.expires_at > self.ctx.clock.now():
                self.ctx.storage.stories.add(story)

    def cleanup(self, limit: int = 1_000) -> int:
        """Rebuilds the tray cache if it lost its data (the repair job of a Redis restart),
        removes expired stories from it and marks their media for deletion; returns how many
        stories it cleaned. Safe to run concurrently and repeatedly."""
        if not self.ctx.storage.stories.is_built():
            self.rebuild_trays()
        now = self.ctx.clock.now()
        grace = self.ctx.settings.stories.media_grace_s
        cleaned = 0
        while True:
            with self.ctx.storage.metadata.transaction() as tx:
                expired = tx.expired_uncleaned_stories(now, limit)
            if not expired:
                return cleaned
            # Cache first, then the mark: a crash in between leaves them uncleaned, and the
            # next run repeats both steps (each is idempotent). Never inside a metadata
            # transaction: the embedded cache shares the SQLite file and would wait on it.
            self.ctx.storage.stories.remove(expired)
            with self.ctx.storage.metadata.transaction() as tx:
                tx.mark_media_for_deletion(sorted({s.media_id for s in expired}), now + grace)
                tx.mark_stories_cleaned([s.id for s in expired], now)
            cleaned += len(expired)
            if len(expired) < limit:
                return cleaned

    # --- helpers ------------------------------------------------------------------------------

    def _visible_story(self, viewer_id: int, story_id: int) -> Story:
        """The active story if the viewer may see it (author, or a follower not blocked)."""
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            story = tx.get_story(story_id)
            if story is None or not story_visible(tx, viewer_id, story, now):
                raise NotFound(f"story {story_id} not found or expired", field="story_id")
        return story

    def _story_view(self, story: Story, media: Any, *, seen: bool) -> dict[str, Any]:
        return {
            "id": story.id,
            "author_id": story.author_id,
            "created_at": story.created_at,
            "expires_at": story.expires_at,
            "seen": seen,
            "media": media_view(media, self.ctx.urls) if media is not None else None,
        }


def _story_payload(story: Story) -> dict[str, Any]:
    return {
        "story_id": story.id,
        "author_id": story.author_id,
        "media_id": story.media_id,
        "created_at": story.created_at,
        "expires_at": story.expires_at,
    }


def _tray_story(entry: tuple[int, float, float], seen: bool) -> dict[str, Any]:
    story_id, created_at, expires_at = entry
    return {"id": story_id, "created_at": created_at, "expires_at": expires_at, "seen": seen}


def _name(users: dict, user_id: int) -> str | None:
    user = users.get(user_id)
    return user.username if user is not None else None
