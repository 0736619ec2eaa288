"""The home feed (``GET /v1/feed``): ranked posts of the people the caller follows, a page at a
time with an opaque cursor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.social.api.deps import BackendDep, FeedCursor, FeedLimit, Reader, error_responses

router = APIRouter(tags=["feed"], responses=error_responses(400, 401, 404, 410, 422, 429, 503))


@router.get("/v1/feed")
def feed(
    backend: BackendDep,
    user_id: Reader,
    limit: FeedLimit = None,
    cursor: FeedCursor = None,
) -> dict[str, Any]:
    return backend.feed.home(user_id, limit, cursor)
