"""The inference service's HTTP API (FastAPI), served by ``recsys serve``.

Endpoints (JSON; every error is ``{"error": {"code", "message", "field", "row"}}``):

* ``POST /rank``: the feed's contract (``serving/social/ranking.py``)::

      {"user_id": 7, "user": {"country": "fr", ...},
       "candidates": [{"post_id": 12, "topic": "travel", ...}, ...]}
      -> {"scores": [...], "probabilities": {"like": [...], ...}, "model_version": 1}

  Each candidate is one row of raw features (the training data's names); ``user_id`` and the
  ``user`` object apply to every candidate (a candidate's own key wins). ``scores`` are the
  value formula over the task probabilities. An unknown feature, a wrong type, an empty or
  oversize candidate list is a 422 naming the field (and the candidate's index).
* ``POST /retrieve``: ``{"user_id", "k", "history"?, "features"?, "exclude_history"?}`` ->
  ``{"items": [raw ids], "scores": [...]}`` (user tower -> FAISS).
* ``POST /recommend``: retrieve ``k`` -> rank -> value -> the top ``n`` with per-stage scores
  and latencies (needs a ranker and a two-tower export).
* ``GET /health`` (liveness and what is loaded), ``GET /metadata`` (the manifests),
  ``GET /metrics`` (Prometheus text: requests, latency histograms per endpoint and stage,
  request-time input events, reloads), ``POST /reload`` (load a new export now).

Each request reads the service's current model set once, so a hot reload never changes the
models under a request in flight.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from serving.inference.errors import RequestError
from serving.inference.service import InferenceService, ModelSet

__all__ = ["create_app"]

log = logging.getLogger(__name__)
Id = int | str


class RankRequest(BaseModel):
    """``POST /rank``."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id | None = None
    user: dict[str, Any] = Field(default_factory=dict)
    candidates: list[dict[str, Any]]


class RetrieveRequest(BaseModel):
    """``POST /retrieve``."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id
    k: int = 100
    history: list[Id] | None = None
    features: dict[str, Any] = Field(default_factory=dict)
    exclude_history: bool | None = None


class RecommendRequest(RetrieveRequest):
    """``POST /recommend``: a retrieve request plus the ranking stage's inputs."""

    k: int = 200
    n: int = 20
    user: dict[str, Any] = Field(default_factory=dict)
    item_features: dict[str, dict[str, Any]] = Field(default_factory=dict)


def _error(status: int, code: str, message: str, field: str | None = None, row: int | None = None):
    body = {"error": {"code": code, "message": message, "field": field, "row": row}}
    return JSONResponse(body, status_code=status)


class NotLoaded(Exception):
    """The endpoint needs a model this service did not load."""


def _user_request(body: RetrieveRequest) -> dict[str, Any]:
    request: dict[str, Any] = {"user_id": body.user_id, **body.features}
    if body.history is not None:
        request["history"] = body.history
    return request


def create_app(service: InferenceService) -> FastAPI:
    """The FastAPI app over ``service`` (its watcher runs while the app runs)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_watching()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="recsys inference", version="1", lifespan=lifespan)
    metrics = service.metrics

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.observe_request(endpoint, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(RequestError)
    async def bad_request(_: Request, error: RequestError) -> JSONResponse:
        return _error(422, "invalid_request", str(error), error.field, error.row)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        return _error(422, "invalid_request", first.get("msg", "bad request"), ".".join(loc))

    @app.exception_handler(NotLoaded)
    async def not_loaded(_: Request, error: NotLoaded) -> JSONResponse:
        return _error(404, "not_loaded", str(error))

    def current(need: str) -> ModelSet:
        models = service.models
        if getattr(models, need) is None:
            raise NotLoaded(
                f"this service has no {need}: serve.run_dir / serve.retrieval_run_dir name "
                "the exports it loads"
            )
        return models

    @app.post("/rank")
    def rank(body: RankRequest) -> dict[str, Any]:
        models = current("ranker")
        ranker = models.ranker
        assert ranker is not None
        base = dict(body.user)
        if body.user_id is not None and "user_id" in ranker.raw_features:
            base["user_id"] = body.user_id
        rows = [{**base, **c} for c in body.candidates] if base else body.candidates
        t0 = time.perf_counter()
        feeds = ranker.preprocessor.transform(rows)
        t1 = time.perf_counter()
        probabilities = ranker.run(feeds)
        t2 = time.perf_counter()
        scores = ranker.values(probabilities)
        metrics.observe_stage("preprocess", t1 - t0)
        metrics.observe_stage("inference", t2 - t1)
        return {
            "scores": scores.tolist(),
            "probabilities": {t: p.tolist() for t, p in probabilities.items()},
            "model_version": models.version,
        }

    @app.post("/retrieve")
    def retrieve(body: RetrieveRequest) -> dict[str, Any]:
        models = current("retriever")
        assert models.retriever is not None
        t0 = time.perf_counter()
        items, scores = models.retriever.retrieve(_user_request(body), body.k, body.exclude_history)
        metrics.observe_stage("retrieve", time.perf_counter() - t0)
        return {"items": items, "scores": scores.tolist(), "model_version": models.version}

    @app.post("/recommend")
    def recommend(body: RecommendRequest) -> dict[str, Any]:
        models = current("recommender")
        assert models.recommender is not None
        page = models.recommender.recommend(
            _user_request(body),
            body.k,
            body.n,
            context=body.user,
            item_features=body.item_features,
            exclude_history=body.exclude_history,
        )
        for stage in ("retrieve", "rank", "order"):
            metrics.observe_stage(stage, page.latency_ms[stage] / 1e3)
        return {**page.to_dict(), "model_version": models.version}

    @app.get("/health")
    def health() -> dict[str, Any]:
        models = service.models
        return {
            "status": "ok",
            "model_version": models.version,
            "ranker": models.ranker is not None,
            "retriever": models.retriever is not None,
            "recommend": models.recommender is not None,
            "last_reload_error": service.last_reload_error,
        }

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return service.models.metadata()

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        text = metrics.render(service.input_counters(), service.models.labels())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.post("/reload")
    def reload() -> JSONResponse:
        result = service.reload(force=True)
        return JSONResponse(result, status_code=200 if result["error"] is None else 409)

    return app
