"""The app factory: :func:`create_app` builds the FastAPI app over a backend, with its
lifespan (opening the backend and running the workers in process), the error handlers that
turn every error into the JSON error body, and the routers of :mod:`serving.social.api.routes`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.social.api.routes import ROUTERS
from serving.social.backend import Backend, open_backend
from serving.social.domain import BackendError, RateLimited, Unauthorized, Unavailable
from serving.social.settings import BackendSettings
from serving.social.workers import Workers

__all__ = ["create_app"]

log = logging.getLogger(__name__)


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
    for router in ROUTERS:
        app.include_router(router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """:class:`BackendError` -> its status and code; a request-shape error -> 422 with the
    offending fields; anything else -> a logged 500 that reveals nothing."""

    @app.exception_handler(BackendError)
    async def backend_error(request: Request, error: BackendError) -> JSONResponse:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.field:
            body["field"] = error.field
        headers = {}
        if isinstance(error, RateLimited | Unavailable):
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
        body: dict[str, Any] = {"code": "invalid_request", "message": message, "fields": fields}
        first = error.errors()[0].get("loc", ()) if error.errors() else ()
        # the parameter's own name: "caption" for ("body", "caption"), "events[0].dwell_ms"
        named = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in first[1:]]
        if named:
            body["field"] = "".join(named).lstrip(".")
        return JSONResponse({"error": body}, status_code=422)

    app.add_middleware(_AnswerUnexpected)


class _AnswerUnexpected:
    """Turns an exception no handler took into a logged 500 with the JSON error body, and lets
    the connection live on. (Starlette's own last-resort handler re-raises after answering, so
    the server closes the keep-alive connection and the client's next request on it is reset.)
    An exception after the answer has started cannot be answered and still closes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            answer = JSONResponse(
                {"error": {"code": "internal", "message": "internal error"}}, status_code=500
            )
            await answer(scope, receive, send)
