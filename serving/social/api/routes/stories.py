"""Stories: post one (``POST /v1/stories``), the tray of followed users' active stories, read
one, record a view, and list a story's viewers (the author only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.social.api.deps import (
    BackendDep,
    Body,
    BodyId,
    Id,
    IdempotencyHeader,
    Reader,
    Writer,
    idempotency,
)

router = APIRouter(tags=["stories"])


class StoryIn(Body):
    media_id: BodyId


@router.post("/v1/stories", status_code=201)
def post_story(
    body: StoryIn, backend: BackendDep, user_id: Writer, idempotency_key: IdempotencyHeader = None
) -> dict[str, Any]:
    key = idempotency(user_id, idempotency_key)
    return backend.stories.post(user_id, body.media_id, idempotency=key)


# "/v1/stories/tray" before "/v1/stories/{story_id}", which would otherwise match it.
@router.get("/v1/stories/tray")
def tray(backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.stories.tray(user_id)


@router.get("/v1/stories/{story_id}")
def get_story(story_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.stories.get(user_id, story_id)


@router.post("/v1/stories/{story_id}/view")
def view_story(story_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
    return backend.stories.view(user_id, story_id)


@router.get("/v1/stories/{story_id}/viewers")
def story_viewers(story_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.stories.viewers(user_id, story_id)
