"""Posts: create, read and delete one post (``/v1/posts``), and an author's posts
(``/v1/users/{target}/posts``, newest first, keyset cursor)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from serving.social.api.deps import (
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
    idempotency,
)

router = APIRouter(tags=["posts"])


class PostIn(Body):
    caption: Text = Field("", max_length=10_000)
    media_id: BodyId | None = None
    topic: Text = Field("", max_length=64)


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
