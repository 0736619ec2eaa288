"""The HTTP API (FastAPI): ``create_app`` builds it over a :class:`~serving.social.backend.Backend`.

Every route is under ``/v1``; the OpenAPI schema is served at ``/openapi.json`` (docs at
``/docs``). Writes and reads need ``Authorization: Bearer <token>`` from register or login and
are rate-limited per user with token buckets (``rate_limits.*``; registration and login per
client address): an exhausted bucket answers 429 with ``Retry-After`` in whole seconds.

Errors are JSON ``{"error": {"code": ..., "message": ..., "field": ...}}`` with the status of
the :class:`~serving.social.domain.BackendError` raised; request-shape errors are 422 with the
offending fields listed. Blobs are served from ``/v1/blobs/{sha256}`` with
``Cache-Control: public, max-age=..., immutable`` and an ETag: a key never changes content.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Header, Path, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from serving.social.backend import Backend, open_backend
from serving.social.domain import (
    MAX_ID,
    BackendError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from serving.social.media.sniff import CONTENT_TYPES, detect_format
from serving.social.settings import BackendSettings
from serving.social.workers import Workers

log = logging.getLogger(__name__)


#: A path id: a positive integer that fits the databases' BIGINT (larger ones are a 422, not a
#: driver overflow).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


# --- request bodies -------------------------------------------------------------------------


class RegisterIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    country: str = Field("", max_length=8)
    age_bucket: str = Field("", max_length=16)


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PostIn(BaseModel):
    caption: str = Field("", max_length=10_000)
    media_id: Id | None = Field(None, ge=1)
    topic: str = Field("", max_length=64)


class StoryIn(BaseModel):
    media_id: Id = Field(ge=1)


class CommentIn(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


class ImpressionIn(BaseModel):
    post_id: Id
    dwell_ms: int = 0
    event_id: str | None = None


class ImpressionsIn(BaseModel):
    events: list[ImpressionIn] = Field(min_length=1)


# --- the app --------------------------------------------------------------------------------


def create_app(
    settings: BackendSettings | None = None,
    *,
    backend: Backend | None = None,
    start_workers: bool | None = None,
) -> FastAPI:
    """The API over ``backend`` (or one opened from ``settings`` at start-up). Workers run as
    threads of this process when ``start_workers`` (default ``server.workers_in_process``)."""
    if backend is None and settings is None:
        settings = BackendSettings()
    owned = backend is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal backend
        if backend is None:
            backend = open_backend(settings)
        app.state.backend = backend
        run_workers = (
            backend.settings.server.workers_in_process if start_workers is None else start_workers
        )
        workers = Workers(backend) if run_workers else None
        if workers is not None:
            workers.start()
        try:
            yield
        finally:
            if workers is not None:
                workers.stop()
            if owned:
                backend.close()

    app = FastAPI(
        title="recsys social backend",
        version="1.0",
        description="Feed (hybrid fanout), stories, media and interactions.",
        lifespan=lifespan,
    )
    if backend is not None:
        app.state.backend = backend
    _install_error_handlers(app)
    _install_routes(app)
    return app


def _blob_content_type(head: bytes) -> str:
    """The MIME type of a stored blob from its first bytes (blobs carry no metadata)."""
    try:
        return CONTENT_TYPES.get(detect_format(head), "application/octet-stream")
    except Exception:
        return "application/octet-stream"


def _backend(request: Request) -> Backend:
    return request.app.state.backend


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BackendError)
    async def backend_error(request: Request, error: BackendError) -> JSONResponse:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.field:
            body["field"] = error.field
        headers = {}
        if isinstance(error, RateLimited):
            headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        if isinstance(error, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": body}, status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in error.errors()
        ]
        message = "; ".join(f"{f['loc']}: {f['message']}" for f in fields) or "invalid request"
        return JSONResponse(
            {"error": {"code": "invalid_request", "message": message, "fields": fields}},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error"}}, status_code=500
        )


# --- dependencies ---------------------------------------------------------------------------


def _limit(backend: Backend, bucket: str, key: str) -> None:
    settings = backend.settings.rate_limits
    if not settings.enabled:
        return
    config = getattr(settings, bucket)
    wait = backend.storage.limiter.acquire(
        f"{bucket}:{key}", config.capacity, config.refill_per_s, backend.ctx.clock.now()
    )
    if wait > 0:
        raise RateLimited(
            f"too many {bucket} requests; retry in {math.ceil(wait)} s", retry_after=wait
        )


def current_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> int:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing or malformed Authorization: Bearer <token> header")
    return _backend(request).accounts.authenticate(token.strip())


def _limited(bucket: str):
    def dependency(request: Request, user_id: Annotated[int, Depends(current_user)]) -> int:
        _limit(_backend(request), bucket, str(user_id))
        return user_id

    return dependency


def _auth_limited(request: Request) -> None:
    client = request.client.host if request.client else "unknown"
    _limit(_backend(request), "auth", client)


Writer = Annotated[int, Depends(_limited("writes"))]
Reader = Annotated[int, Depends(_limited("reads"))]
Uploader = Annotated[int, Depends(_limited("uploads"))]
BackendDep = Annotated[Backend, Depends(_backend)]


# --- routes ---------------------------------------------------------------------------------


def _install_routes(app: FastAPI) -> None:
    # health
    @app.get("/healthz", tags=["ops"])
    def healthz(backend: BackendDep) -> dict[str, str]:
        backend.storage.metadata.check()
        return {"status": "ok", "storage": backend.settings.storage}

    # accounts
    @app.post(
        "/v1/auth/register",
        status_code=201,
        tags=["accounts"],
        dependencies=[Depends(_auth_limited)],
    )
    def register(body: RegisterIn, backend: BackendDep) -> dict[str, Any]:
        s = backend.accounts.register(
            body.username, body.password, country=body.country, age_bucket=body.age_bucket
        )
        return {
            "user": {"id": s.user.id, "username": s.user.username},
            "token": s.token,
            "expires_at": s.expires_at,
        }

    @app.post("/v1/auth/login", tags=["accounts"], dependencies=[Depends(_auth_limited)])
    def login(body: LoginIn, backend: BackendDep) -> dict[str, Any]:
        s = backend.accounts.login(body.username, body.password)
        return {
            "user": {"id": s.user.id, "username": s.user.username},
            "token": s.token,
            "expires_at": s.expires_at,
        }

    @app.post("/v1/auth/logout", status_code=204, tags=["accounts"])
    def logout(
        backend: BackendDep, user_id: Writer, authorization: Annotated[str, Header()]
    ) -> Response:
        backend.accounts.logout(authorization.partition(" ")[2].strip())
        return Response(status_code=204)

    @app.get("/v1/users/me", tags=["accounts"])
    def me(backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.accounts.profile(user_id)

    @app.get("/v1/users/{target}", tags=["accounts"])
    def profile(target: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.accounts.profile(target)

    @app.put("/v1/users/{target}/follow", tags=["graph"])
    def follow(target: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return {"following": True, "changed": backend.accounts.follow(user_id, target)}

    @app.delete("/v1/users/{target}/follow", tags=["graph"])
    def unfollow(target: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return {"following": False, "changed": backend.accounts.unfollow(user_id, target)}

    @app.put("/v1/users/{target}/block", tags=["graph"])
    def block(target: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return {"blocked": True, "changed": backend.accounts.block(user_id, target)}

    @app.delete("/v1/users/{target}/block", tags=["graph"])
    def unblock(target: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return {"blocked": False, "changed": backend.accounts.unblock(user_id, target)}

    @app.get("/v1/users/{target}/posts", tags=["posts"])
    def user_posts(
        target: Id,
        backend: BackendDep,
        user_id: Reader,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> dict[str, Any]:
        return backend.posts.by_author(user_id, target, limit, cursor)

    # media
    @app.post("/v1/media", status_code=202, tags=["media"])
    async def upload(
        request: Request,
        backend: BackendDep,
        user_id: Uploader,
        file: Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, HEIC) or video")],
    ) -> dict[str, Any]:
        media = backend.settings.media
        limit = max(media.max_image_bytes, media.max_video_bytes)
        declared_length = request.headers.get("content-length")
        if declared_length and declared_length.isdigit() and int(declared_length) > limit + 65_536:
            raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
        return await run_in_threadpool(backend.media.upload, user_id, data, file.content_type)

    @app.get("/v1/media/{media_id}", tags=["media"])
    def media_status(media_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.media.get(user_id, media_id)

    @app.get("/v1/blobs/{key}", tags=["media"], response_class=FileResponse)
    def blob(
        key: str,
        backend: BackendDep,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        cache = f"public, max-age={backend.settings.media.cache_max_age_s}, immutable"
        etag = f'"{key}"'
        if not backend.storage.blobs.exists(key):
            raise NotFound(f"blob {key} not found", field="key")
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
        path = backend.storage.blobs.path(key)
        with path.open("rb") as file:
            content_type = _blob_content_type(file.read(64))
        return FileResponse(
            path, media_type=content_type, headers={"ETag": etag, "Cache-Control": cache}
        )

    # posts
    @app.post("/v1/posts", status_code=201, tags=["posts"])
    def create_post(body: PostIn, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.posts.create(user_id, body.caption, body.media_id, body.topic)

    @app.get("/v1/posts/{post_id}", tags=["posts"])
    def get_post(post_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.posts.get(user_id, post_id)

    @app.delete("/v1/posts/{post_id}", status_code=204, tags=["posts"])
    def delete_post(post_id: Id, backend: BackendDep, user_id: Writer) -> Response:
        backend.posts.delete(user_id, post_id)
        return Response(status_code=204)

    # feed
    @app.get("/v1/feed", tags=["feed"])
    def feed(
        backend: BackendDep,
        user_id: Reader,
        limit: Annotated[int | None, Query(ge=1)] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        return backend.feed.home(user_id, limit, cursor)

    # interactions
    @app.put("/v1/posts/{post_id}/like", tags=["interactions"])
    def like(post_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.interactions.like(user_id, post_id)

    @app.delete("/v1/posts/{post_id}/like", tags=["interactions"])
    def unlike(post_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.interactions.unlike(user_id, post_id)

    @app.put("/v1/posts/{post_id}/save", tags=["interactions"])
    def save(post_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.interactions.save(user_id, post_id)

    @app.delete("/v1/posts/{post_id}/save", tags=["interactions"])
    def unsave(post_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.interactions.unsave(user_id, post_id)

    @app.post("/v1/posts/{post_id}/share", tags=["interactions"])
    def share(post_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.interactions.share(user_id, post_id)

    @app.post("/v1/posts/{post_id}/comments", status_code=201, tags=["interactions"])
    def comment(
        post_id: Id, body: CommentIn, backend: BackendDep, user_id: Writer
    ) -> dict[str, Any]:
        return backend.interactions.comment(user_id, post_id, body.text)

    @app.get("/v1/posts/{post_id}/comments", tags=["interactions"])
    def comments(
        post_id: Id,
        backend: BackendDep,
        user_id: Reader,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> dict[str, Any]:
        return backend.interactions.comments(user_id, post_id, cursor, limit)

    @app.post("/v1/events/impressions", tags=["interactions"])
    def impressions(body: ImpressionsIn, backend: BackendDep, user_id: Writer) -> dict[str, int]:
        return backend.interactions.impressions(
            user_id, [e.model_dump(exclude_none=True) for e in body.events]
        )

    # stories
    @app.post("/v1/stories", status_code=201, tags=["stories"])
    def post_story(body: StoryIn, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.stories.post(user_id, body.media_id)

    @app.get("/v1/stories/tray", tags=["stories"])
    def tray(backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.stories.tray(user_id)

    @app.get("/v1/stories/{story_id}", tags=["stories"])
    def get_story(story_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.stories.get(user_id, story_id)

    @app.post("/v1/stories/{story_id}/view", tags=["stories"])
    def view_story(story_id: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return backend.stories.view(user_id, story_id)

    @app.get("/v1/stories/{story_id}/viewers", tags=["stories"])
    def story_viewers(story_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
        return backend.stories.viewers(user_id, story_id)
