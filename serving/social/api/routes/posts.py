"""Posts: create, read and delete one post (``/v1/posts``), and an author's posts
(``/v1/users/{target}/posts``, newest first, keyset cursor)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import ConfigDict, Field

from serving.social.api.deps import (
    NON_BLANK,
    BackendDep,
    BeforeIdCursor,
    Body,
    BodyId,
    Id,
    IdempotencyHeader,
    PageLimit,
    Reader,
    Text,
    Writer,
    error_responses,
    idempotency,
)
from serving.social.services.posts import MAX_CAPTION, TOPIC

router = APIRouter(
    tags=["posts"], responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503)
)


class PostIn(Body):
    """A caption with a non-blank character, or a media item (or both)."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["media_id"], "properties": {"media_id": {"type": "integer"}}},
                {"required": ["caption"], "properties": {"caption": {"pattern": NON_BLANK}}},
            ]
        },
    )

    caption: Text = Field("", max_length=MAX_CAPTION, description="needed unless media_id is")
    media_id: BodyId | None = None
    topic: str = Field("", max_length=32, pattern=TOPIC.pattern)


@router.get("/v1/users/{target}/posts")
def user_posts(
    target: Id,
    backend: BackendDep,
    user_id: Reader,
    limit: PageLimit = 20,
    cursor: BeforeIdCursor = None,
) -> dict[str, Any]:
    return backend.posts.by_author(user_id, target, limit, cursor)


@router.post("/v1/posts", status_code=201)
def create_post(
    body: PostIn, backend: BackendDep, user_id: Writer, idempotency_key: IdempotencyHeader = None
) -> dict[str, Any]:
    return backend.posts.create(
        user_id,
        body.caption,
        body.media_id,
        body.topic,
        idempotency=idempotency(user_id, idempotency_key),
    )


@router.get("/v1/posts/{post_id}")
def get_post(post_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.posts.get(user_id, post_id)


@router.delete("/v1/posts/{post_id}", status_code=204)
def delete_post(post_id: Id, backend: BackendDep, user_id: Writer) -> Response:
    backend.posts.delete(user_id, post_id)
    return Response(status_code=204)
