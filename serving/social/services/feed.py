"""The home feed: pushed timeline + pulled celebrity posts, merged, deduplicated, filtered,
ranked and paginated.

Read path (``home``):

1. The reader's follow graph: followees split by ``fanout.threshold`` into pushed authors and
   pulled celebrities, plus blocks in either direction.
2. A timeline that was never built, was dropped, or belongs to a user back from inactivity is
   rebuilt from the database (newest ``fanout.backfill_posts`` per pushed author and self).
3. Candidates: the timeline's newest ids merged with each celebrity's newest posts, deduplicated,
   then filtered at read time (live posts only, author followed or self, no blocks) so a late
   fanout message can never show a deleted post or a blocked author.
4. Order: chronological by default, with a keyset cursor (``c<post id>``) that is stable while
   new posts arrive. With a ranker the first page ranks up to ``feed.candidates`` posts and keeps
   that order as a snapshot in the cache for ``feed.session_ttl_s`` (cursor ``r<session>.<n>``),
   so later pages neither repeat nor skip posts although scores change.

Redis down: the cached graph is skipped (read from the database) and the candidates come
through the pull path alone (every followed author's newest posts, as for celebrities), so the
chronological feed keeps working on PostgreSQL; a ranked feed's snapshot needs Redis (503).
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

from serving.social.cachekeys import GRAPH_TTL_S, graph_key
from serving.social.context import Context
from serving.social.domain import MAX_ID, BadRequest, CursorExpired, Post, Unavailable
from serving.social.ranking import Candidate, RankingClient, Viewer
from serving.social.services.shared import existing_user
from serving.social.views import post_views

# Re-touching ``last_active_at`` on every read would make each read a write; once an hour is
# plenty for an inactivity period measured in days.
TOUCH_EVERY_S = 3_600.0


@dataclass
class _Graph:
    followees: set[int]
    celebrities: list[int]
    pushed_authors: list[int]
    blocked: set[int]
    #: the pushed timeline is out of reach (Redis down): pull every author instead
    pull_all: bool = False


class FeedService:
    def __init__(self, ctx: Context, ranking: RankingClient) -> None:
        self.ctx = ctx
        self.ranking = ranking

    # --- public -------------------------------------------------------------------------------

    def home(self, user_id: int, limit: int | None = None, cursor: str | None = None) -> dict:
        """``{"items": [post view, ...], "next_cursor": str | None, "ranked_by": str}``."""
        settings = self.ctx.settings.feed
        limit = settings.page_size if limit is None else limit
        if not 1 <= limit <= settings.max_page_size:
            raise BadRequest(f"limit must be between 1 and {settings.max_page_size}", field="limit")
        graph = self._graph(user_id)
        if cursor and cursor.startswith("r"):
            return self._snapshot_page(user_id, graph, cursor, limit)
        if cursor and not (
            cursor.startswith("c") and cursor[1:].isdigit() and int(cursor[1:]) <= MAX_ID
        ):
            raise BadRequest(f"malformed cursor {cursor!r}", field="cursor")
        before = int(cursor[1:]) if cursor else None
        if not self.ranking.ranked:
            posts, views = self._collect(user_id, graph, limit + 1, before, views_for=limit)
            more = len(posts) > limit
            return {
                "items": views,
                "next_cursor": f"c{posts[limit - 1].id}" if more else None,
                "ranked_by": "chronological",
            }
        if before is not None:
            raise BadRequest("a chronological cursor on a ranked feed", field="cursor")
        return self._ranked_first_page(user_id, graph, limit)

    def rebuild(self, user_id: int) -> int:
        """Rebuilds the user's pushed timeline from the database; returns the entries written."""
        return self._rebuild(user_id, self._graph(user_id, rebuild=False))

    # --- graph and timeline -------------------------------------------------------------------

    def _graph(self, user_id: int, rebuild: bool = True) -> _Graph:
        """The reader's follow graph, from the cache when a read in the last ``GRAPH_TTL_S``
        left it there (graph writes delete it), else from the database (which also notices a
        user back from inactivity and refreshes ``last_active_at``)."""
        now = self.ctx.clock.now()
        cache = self.ctx.storage.cache
        key = graph_key(user_id)
        try:
            raw = cache.get(key)
        except Unavailable:
            graph, _ = self._graph_from_db(user_id, now)
            graph.pull_all = True
            return graph
        cached = json.loads(raw) if raw is not None else None
        if cached is not None and 0 <= now - cached["at"] < GRAPH_TTL_S:
            # Filled by a read less than GRAPH_TTL_S ago, which built the timeline; only
            # inactivity (days) drops a timeline, so it is still built: no check needed.
            return _Graph(
                set(cached["followees"]),
                cached["celebrities"],
                cached["pushed"],
                set(cached["blocked"]),
            )
        graph, came_back = self._graph_from_db(user_id, now)
        entry = {
            "at": now,
            "followees": sorted(graph.followees),
            "celebrities": graph.celebrities,
            "pushed": graph.pushed_authors,
            "blocked": sorted(graph.blocked),
        }
        try:
            cache.set(key, json.dumps(entry).encode(), GRAPH_TTL_S)
            if rebuild and (came_back or not self.ctx.storage.timelines.is_built(user_id)):
                self._rebuild(user_id, graph)
        except Unavailable:
            graph.pull_all = True
        return graph

    def _graph_from_db(self, user_id: int, now: float) -> tuple[_Graph, bool]:
        fanout = self.ctx.settings.fanout
        with self.ctx.storage.metadata.transaction() as tx:
            user = existing_user(tx, user_id)
            came_back = user.last_active_at < now - fanout.inactive_after_days * 86_400
            if now - user.last_active_at >= TOUCH_EVERY_S:
                tx.touch_user(user_id, now)
            followees = tx.followees(user_id)
            counts = tx.follower_counts(followees)
            blocked = tx.blocked_either_way(user_id)
        celebrities = [f for f in followees if counts.get(f, 0) >= fanout.threshold]
        pushed = [f for f in followees if counts.get(f, 0) < fanout.threshold]
        return _Graph(set(followees), celebrities, [*pushed, user_id], blocked), came_back

    def _rebuild(self, user_id: int, graph: _Graph) -> int:
        timelines = self.ctx.storage.timelines
        # Drop first, then read: a fanout push that lands after the drop is kept, and any post
        # committed before the read is in it, so nothing falls between the two.
        timelines.drop(user_id)
        with self.ctx.storage.metadata.transaction() as tx:
            posts = tx.recent_posts(graph.pushed_authors, self.ctx.settings.fanout.backfill_posts)
        ids = sorted((p.id for p in posts), reverse=True)[: timelines.cap]
        if ids:
            timelines.push_many(user_id, ids)
        timelines.mark_built(user_id)
        return len(ids)

    # --- candidates ---------------------------------------------------------------------------

    def _visible(self, user_id: int, graph: _Graph, post: Post) -> bool:
        author = post.author_id
        return (author == user_id or author in graph.followees) and author not in graph.blocked

    def _collect(
        self,
        user_id: int,
        graph: _Graph,
        want: int,
        before: int | None,
        views_for: int | None = None,
    ) -> tuple[list[Post], list[dict[str, Any]] | None]:
        """Up to ``want`` visible posts older than ``before``, newest first, and (when
        ``views_for`` is given) the views of the first ``views_for`` of them, built in the
        same transaction as the last lookup (one database round of a page read, not two)."""
        per_celebrity = self.ctx.settings.fanout.celebrity_posts_per_read
        found: list[Post] = []
        views: list[dict[str, Any]] | None = None
        while True:
            batch = max(want - len(found), 16)
            pushed = self._pushed_page(user_id, graph, batch, before)
            pulled_limit = min(batch, per_celebrity)
            pulled_authors = [*graph.celebrities, *(graph.pushed_authors if graph.pull_all else ())]
            with self.ctx.storage.metadata.reading() as tx:
                pulled = (
                    tx.recent_posts(pulled_authors, pulled_limit, before_id=before)
                    if pulled_authors
                    else []
                )
                by_id = {p.id: p for p in pulled}
                missing = [i for i in pushed if i not in by_id]
                if missing:
                    by_id.update(tx.get_posts(missing))
                # Each source that came back full is exact only down to its oldest id: merge
                # just above the highest such horizon, so the next round resumes without a gap.
                horizons = [pushed[-1]] if len(pushed) == batch else []
                per_author: dict[int, list[int]] = {}
                for post in pulled:
                    per_author.setdefault(post.author_id, []).append(post.id)
                horizons += [min(ids) for ids in per_author.values() if len(ids) == pulled_limit]
                horizon = max(horizons, default=0)
                merged = sorted(
                    (i for i in {*pushed, *(p.id for p in pulled)} if i >= horizon), reverse=True
                )
                for post_id in merged:
                    post = by_id.get(post_id)
                    if post is not None and self._visible(user_id, graph, post):
                        found.append(post)
                # done when full, or when every source is exhausted
                if not merged or not horizons or len(found) >= want:
                    if views_for is not None:
                        views = post_views(tx, found[:views_for], self.ctx.urls)
                    break
            before = merged[-1]
        return found[:want], views

    def _pushed_page(
        self, user_id: int, graph: _Graph, limit: int, before: int | None
    ) -> list[int]:
        """Up to ``limit`` ids of the pushed timeline older than ``before``; none when it is out
        of reach (Redis down), after which ``graph`` pulls every author."""
        if graph.pull_all:
            return []
        try:
            return self.ctx.storage.timelines.page(user_id, limit, before)
        except Unavailable:
            graph.pull_all = True
            return []

    # --- ranked feed --------------------------------------------------------------------------

    def _ranked_first_page(self, user_id: int, graph: _Graph, limit: int) -> dict:
        posts, _ = self._collect(user_id, graph, self.ctx.settings.feed.candidates, None)
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            followers = tx.follower_counts(sorted({p.author_id for p in posts}))
            me = tx.get_user(user_id)
        # the features as pipelines.social_events exports them for training (empty text: null)
        viewer = Viewer(
            user_id=user_id,
            country=(me.country or None) if me is not None else None,
            age_bucket=(me.age_bucket or None) if me is not None else None,
            user_follow_count_log=math.log1p(len(graph.followees)),
        )
        candidates = [
            Candidate(
                post_id=p.id,
                author_id=p.author_id,
                topic=p.topic or None,
                media_type=p.media_type or None,
                post_age_hours=max(0.0, (now - p.created_at) / 3_600.0),
                author_followers_log=math.log1p(followers.get(p.author_id, 0)),
                post_length=float(len(p.caption)),
                is_following=int(p.author_id in graph.followees),
            )
            for p in posts
        ]
        order, ranked_by = self.ranking.order(viewer, candidates)
        by_id = {p.id: p for p in posts}
        session = secrets.token_urlsafe(9)
        snapshot = json.dumps({"ids": order, "ranked_by": ranked_by}).encode()
        self.ctx.storage.cache.set(
            self._snapshot_key(user_id, session), snapshot, self.ctx.settings.feed.session_ttl_s
        )
        page = [by_id[i] for i in order[:limit]]
        more = len(order) > limit
        return self._response(page, f"r{session}.{limit}" if more else None, ranked_by)

    def _snapshot_page(self, user_id: int, graph: _Graph, cursor: str, limit: int) -> dict:
        session, _, offset_text = cursor[1:].partition(".")
        if not session or not offset_text.isdigit():
            raise BadRequest(f"malformed cursor {cursor!r}", field="cursor")
        raw = self.ctx.storage.cache.get(self._snapshot_key(user_id, session))
        if raw is None:
            raise CursorExpired(
                "this feed session expired; load the feed again without a cursor",
                field="cursor",
            )
        snapshot = json.loads(raw)
        ids: list[int] = snapshot["ids"]
        offset = int(offset_text)
        window = ids[offset : offset + limit]
        with self.ctx.storage.metadata.transaction() as tx:
            live = tx.get_posts(window)
        page = [live[i] for i in window if i in live and self._visible(user_id, graph, live[i])]
        end = offset + len(window)
        return self._response(
            page, f"r{session}.{end}" if end < len(ids) else None, snapshot["ranked_by"]
        )

    @staticmethod
    def _snapshot_key(user_id: int, session: str) -> str:
        return f"feed:{user_id}:{session}"

    # --- output -------------------------------------------------------------------------------

    def _response(self, posts: list[Post], next_cursor: str | None, ranked_by: str) -> dict:
        with self.ctx.storage.metadata.transaction() as tx:
            items: list[dict[str, Any]] = post_views(tx, posts, self.ctx.urls)
        return {"items": items, "next_cursor": next_cursor, "ranked_by": ranked_by}
