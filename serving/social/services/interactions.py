"""Interactions: likes, saves, comments, shares and impressions.

Each one is stored with its row (like, save, comment) and appended to the event log in the same
transaction; ``pipelines.social_events`` exports that log to Parquet for the rankers. Event ids
make appends idempotent: a client that retries an impression batch with the same ids records
each impression once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from serving.social.context import Context
from serving.social.domain import MAX_ID, BadRequest, IdempotencyKey, InteractionEvent, Post
from serving.social.services.shared import remember, replayed, visible_post

MAX_COMMENT = 1_000
MAX_IMPRESSIONS = 500
MAX_DWELL_MS = 3_600_000
EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class InteractionService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def like(self, user_id: int, post_id: int) -> dict[str, Any]:
        return self._toggle(user_id, post_id, "like", add=True)

    def unlike(self, user_id: int, post_id: int) -> dict[str, Any]:
        return self._toggle(user_id, post_id, "like", add=False)

    def save(self, user_id: int, post_id: int) -> dict[str, Any]:
        return self._toggle(user_id, post_id, "save", add=True)

    def unsave(self, user_id: int, post_id: int) -> dict[str, Any]:
        return self._toggle(user_id, post_id, "save", add=False)

    def share(self, user_id: int, post_id: int) -> dict[str, Any]:
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            post = visible_post(tx, user_id, post_id)
            tx.append_events([self._event("share", user_id, post, now)])
        return {"post_id": post_id, "shared": True}

    def comment(
        self,
        user_id: int,
        post_id: int,
        text: str,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> dict[str, Any]:
        """A new comment; a retry with the same ``idempotency`` key answers the first again."""
        text = text.strip()
        if not text:
            raise BadRequest("comment text is empty", field="text")
        if len(text) > MAX_COMMENT:
            raise BadRequest(f"comment longer than {MAX_COMMENT} characters", field="text")
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            request = {"post_id": post_id, "text": text}
            prior = replayed(tx, idempotency, "comments.create", request, now)
            if prior is not None:
                return prior
            post = visible_post(tx, user_id, post_id)
            comment = tx.add_comment(user_id, post_id, text, now)
            tx.append_events([self._event("comment", user_id, post, now)])
            answer = {
                "id": comment.id,
                "post_id": post_id,
                "user_id": user_id,
                "text": comment.text,
                "created_at": comment.created_at,
            }
            return remember(tx, idempotency, answer)

    def comments(
        self, viewer_id: int, post_id: int, after_id: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        if not 1 <= limit <= 100:
            raise BadRequest("limit must be between 1 and 100", field="limit")
        with self.ctx.storage.metadata.transaction() as tx:
            visible_post(tx, viewer_id, post_id)
            rows = tx.comments(post_id, after_id, limit + 1)
            blocked = tx.blocked_either_way(viewer_id)
        page = rows[:limit]
        return {
            "items": [
                {"id": c.id, "user_id": c.user_id, "text": c.text, "created_at": c.created_at}
                for c in page
                if c.user_id not in blocked
            ],
            "next_cursor": str(page[-1].id) if len(rows) > limit else None,
        }

    def impressions(self, user_id: int, items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Logs a batch of impressions ``[{"post_id", "dwell_ms", "event_id"?}, ...]``; posts
        that no longer exist are skipped and counted, not errors (feeds race with deletes)."""
        if not items:
            raise BadRequest("no impressions given", field="events")
        if len(items) > MAX_IMPRESSIONS:
            raise BadRequest(f"at most {MAX_IMPRESSIONS} impressions per call", field="events")
        parsed: list[tuple[int, int, str]] = []
        for i, item in enumerate(items):
            where = f"events[{i}]"
            post_id, dwell = item.get("post_id"), item.get("dwell_ms", 0)
            if (
                not isinstance(post_id, int)
                or isinstance(post_id, bool)
                or not (1 <= post_id <= MAX_ID)
            ):
                raise BadRequest(f"{where}.post_id must be an id (1 to 2**63 - 1)", field=where)
            if (
                not isinstance(dwell, int)
                or isinstance(dwell, bool)
                or not (0 <= dwell <= MAX_DWELL_MS)
            ):
                raise BadRequest(
                    f"{where}.dwell_ms must be an integer in [0, {MAX_DWELL_MS}]", field=where
                )
            event_id = item.get("event_id") or uuid.uuid4().hex
            if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
                raise BadRequest(
                    f"{where}.event_id must be 8-64 characters of A-Z, a-z, 0-9, _ and -",
                    field=where,
                )
            parsed.append((post_id, dwell, event_id))
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            posts = tx.get_posts(sorted({p for p, _, _ in parsed}))
            blocked = tx.blocked_either_way(user_id)
            events = [
                InteractionEvent(
                    event_id=f"imp-{user_id}-{event_id}",
                    kind="impression",
                    user_id=user_id,
                    post_id=post_id,
                    author_id=posts[post_id].author_id,
                    ts=now,
                    dwell_ms=dwell,
                )
                for post_id, dwell, event_id in parsed
                if post_id in posts and posts[post_id].author_id not in blocked
            ]
            recorded = tx.append_events(events)
        return {
            "recorded": recorded,
            "duplicates": len(events) - recorded,
            "skipped": len(parsed) - len(events),
        }

    # --- helpers ------------------------------------------------------------------------------

    def _toggle(self, user_id: int, post_id: int, kind: str, *, add: bool) -> dict[str, Any]:
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            post = visible_post(tx, user_id, post_id)
            if kind == "like":
                changed = (
                    tx.add_like(user_id, post_id, now) if add else tx.remove_like(user_id, post_id)
                )
            else:
                changed = (
                    tx.add_save(user_id, post_id, now) if add else tx.remove_save(user_id, post_id)
                )
            if changed and add:
                tx.append_events([self._event(kind, user_id, post, now)])
            counts = tx.post_counts([post_id]).get(post_id, {})
        return {"post_id": post_id, f"{kind}d": add, "changed": changed, "counts": counts}

    @staticmethod
    def _event(kind: str, user_id: int, post: Post, now: float) -> InteractionEvent:
        return InteractionEvent(
            event_id=uuid.uuid4().hex,
            kind=kind,  # type: ignore[arg-type]
            user_id=user_id,
            post_id=post.id,
            author_id=post.author_id,
            ts=now,
        )
