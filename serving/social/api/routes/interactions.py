"""Interactions with a post: like, save (each added with ``PUT``, removed with ``DELETE``),
share, comments (``/v1/posts/{post_id}/...``), and batches of feed impressions
(``POST /v1/events/impressions``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from serving.social.api.deps import (
    BackendDep,
    Body,
    BodyId,
    Id,
    IdempotencyHeader,
    OffsetCursor,
    PageLimit,
    Reader,
    Text,
    Writer,
    idempotency,
)
from serving.social.services.interactions import (
    EVENT_ID,
    MAX_DWELL_MS,
    MAX_IMPRESSIONS,
    InteractionService,
)

router = APIRouter(tags=["interactions"])


class CommentIn(Body):
    text: Text = Field(min_length=1, max_length=10_000)


class ImpressionIn(Body):
    post_id: BodyId
    dwell_ms: int = Field(0, ge=0, le=MAX_DWELL_MS)
    event_id: str | None = Field(None, pattern=EVENT_ID.pattern)


class ImpressionsIn(Body):
    events: list[ImpressionIn] = Field(min_length=1, max_length=MAX_IMPRESSIONS)


PostAction = Callable[[InteractionService, int, int], dict[str, Any]]

#: (method, last path segment, service method) of the one-click actions on a post.
POST_ACTIONS: tuple[tuple[str, str, PostAction], ...] = (
    ("PUT", "like", InteractionService.like),
    ("DELETE", "like", InteractionService.unlike),
    ("PUT", "save", InteractionService.save),
    ("DELETE", "save", InteractionService.unsave),
    ("POST", "share", InteractionService.share),
)


def _action_endpoint(action: PostAction) -> Callable[..., dict[str, Any]]:
    """The endpoint that applies ``action`` to ``post_id`` as the caller and answers what the
    service returns."""

    def endpoint(post_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return action(backend.interactions, user_id, post_id)

    return endpoint


def _add_action_routes() -> None:
    """Adds :data:`POST_ACTIONS`, each named after its service method (``like``, ...)."""
    for method, segment, action in POST_ACTIONS:
        router.add_api_route(
            f"/v1/posts/{{post_id}}/{segment}",
            _action_endpoint(action),
            methods=[method],
            name=action.__name__,
        )


_add_action_routes()


@router.post("/v1/posts/{post_id}/comments", status_code=201)
def comment(
    post_id: Id,
    body: CommentIn,
    backend: BackendDep,
    user_id: Writer,
    idempotency_key: IdempotencyHeader = None,
) -> dict[str, Any]:
    key = idempotency(user_id, idempotency_key)
    return backend.interactions.comment(user_id, post_id, body.text, idempotency=key)


@router.get("/v1/posts/{post_id}/comments")
def comments(
    post_id: Id,
    backend: BackendDep,
    user_id: Reader,
    limit: PageLimit = 50,
    cursor: OffsetCursor = 0,
) -> dict[str, Any]:
    return backend.interactions.comments(user_id, post_id, cursor, limit)


@router.post("/v1/events/impressions")
def impressions(body: ImpressionsIn, backend: BackendDep, user_id: Writer) -> dict[str, int]:
    return backend.interactions.impressions(
        user_id, [e.model_dump(exclude_none=True) for e in body.events]
    )
