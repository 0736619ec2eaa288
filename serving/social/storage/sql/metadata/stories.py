"""Stories and who viewed them (tables ``stories`` and ``story_views``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from serving.social.domain import Story
from serving.social.storage.sql import schema as s
from serving.social.storage.sql._util import chunks
from serving.social.storage.sql.metadata.base import TxBase, records


class StoriesTx(TxBase):
    """The story methods of :class:`~serving.social.storage.interfaces.MetadataTx`."""

    def create_story(self, author_id: int, media_id: int, now: float, expires_at: float) -> Story:
        """A new story."""
        return self._create(
            Story,
            s.stories,
            author_id=author_id,
            media_id=media_id,
            created_at=now,
            expires_at=expires_at,
        )

    def get_story(self, story_id: int) -> Story | None:
        """The story (expired or not), or None."""
        return self._one(Story, sa.select(s.stories).where(s.stories.c.id == story_id))

    def active_stories(self, author_ids: Sequence[int], now: float) -> list[Story]:
        """Stories with ``expires_at > now`` (strictly), oldest first."""
        st = s.stories.c
        found: list[Story] = []
        for chunk in chunks(author_ids):
            statement = sa.select(s.stories).where(st.author_id.in_(chunk), st.expires_at > now)
            found.extend(records(Story, self._run(statement)))
        found.sort(key=lambda story: (story.created_at, story.id))
        return found

    def stories_with_media(self, media_id: int) -> list[Story]:
        """The stories (expired or not) showing media item ``media_id``, oldest first."""
        st = s.stories.c
        statement = sa.select(s.stories).where(st.media_id == media_id).order_by(st.id)
        return records(Story, self._run(statement))

    def active_stories_page(self, now: float, after_id: int, limit: int) -> list[Story]:
        """Every author's stories with ``expires_at > now`` and id > ``after_id``, by id, at
        most ``limit`` (the pages a rebuild of the story trays reads)."""
        st = s.stories.c
        statement = (
            sa.select(s.stories)
            .where(st.expires_at > now, st.id > after_id)
            .order_by(st.id)
            .limit(max(0, limit))
        )
        return records(Story, self._run(statement))

    def expired_uncleaned_stories(self, now: float, limit: int) -> list[Story]:
        """Stories with ``expires_at <= now`` not yet marked cleaned, earliest expiry first."""
        st = s.stories.c
        statement = (
            sa.select(s.stories)
            .where(st.expires_at <= now, st.cleaned_at.is_(None))
            .order_by(st.expires_at, st.id)
            .limit(max(0, limit))
        )
        return records(Story, self._run(statement))

    def mark_stories_cleaned(self, story_ids: Sequence[int], now: float) -> None:
        """Sets ``cleaned_at`` on each of ``story_ids``."""
        for chunk in chunks(story_ids):
            self._run(sa.update(s.stories).where(s.stories.c.id.in_(chunk)).values(cleaned_at=now))

    def record_story_view(self, story_id: int, viewer_id: int, now: float) -> bool:
        """Unique per (story, viewer): True the first time only."""
        return self._insert_ignore(
            s.story_views, story_id=story_id, viewer_id=viewer_id, viewed_at=now
        )

    def story_viewers(self, story_id: int) -> list[tuple[int, float]]:
        """``(viewer_id, viewed_at)``, earliest first."""
        v = s.story_views.c
        statement = (
            sa.select(v.viewer_id, v.viewed_at)
            .where(v.story_id == story_id)
            .order_by(v.viewed_at, v.viewer_id)
        )
        return [(row[0], row[1]) for row in self._run(statement)]

    def seen_stories(self, viewer_id: int, story_ids: Sequence[int]) -> set[int]:
        """The ones among ``story_ids`` that ``viewer_id`` viewed."""
        v = s.story_views.c
        seen: set[int] = set()
        for chunk in chunks(story_ids):
            statement = sa.select(v.story_id).where(v.viewer_id == viewer_id, v.story_id.in_(chunk))
            seen.update(self._run(statement).scalars())
        return seen
