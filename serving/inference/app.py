"""The inference service's HTTP API (FastAPI), served by ``recsys serve``.

Endpoints (JSON; every error is ``{"error": {"code", "message", "field", "row"}}``):

* ``POST /rank``: the feed's contract (``serving/social/ranking.py``)::

      {"user_id": 7, "user": {"country": "fr", ...},
       "candidates": [{"post_id": 12, "topic": "travel", ...}, ...]}
      -> {"scores": [...], "probabilities": {"like": [...], ...}, "model_version": 1}

  Each candidate is one row of raw features (the training data's names); ``user_id`` and the
  ``user`` object apply to every candidate (a candidate's own key wins): they are the ranker's
  shared features, transformed once (``OnnxRanker.score(rows, shared)``). With
  ``serve.features`` the features a request lacks are read from the feature store by
  ``user_id`` and ``post_id`` (:mod:`serving.inference.features`): the feed may send ids
  only. ``scores`` (``B``) are the value formula over the task probabilities
  (``{task: B}``). An unknown feature, a wrong type, an empty or oversize candidate list is a
  422 naming the field (and the candidate's index). The hot path skips FastAPI's body model
  and response encoder: the body is parsed by pydantic-core's JSON parser (Python's ``json``
  for what it refuses) and checked by :func:`parse_rank_body`, the reply is encoded once by
  ``pydantic_core.to_json``.
* ``POST /retrieve``: ``{"user_id", "k", "history"?, "features"?, "exclude_history"?}`` ->
  ``{"items": [raw ids], "scores": [...]}`` (user tower -> FAISS).
* ``POST /recommend``: retrieve ``k`` -> rank -> value -> the top ``n`` with per-stage scores
  and latencies (needs a ranker and a two-tower export).
* ``GET /health`` (liveness and what is loaded), ``GET /metadata`` (the manifests),
  ``GET /metrics`` (Prometheus text: requests, latency histograms per endpoint and stage,
  request-time input events, reloads), ``POST /reload`` (load a new export now).

Each request reads the service's current model set once, so a hot reload never changes the
models under a request in flight. Request counts and latencies are taken by a pure ASGI
middleware (:class:`~serving.inference.metrics.ObserveRequests`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from serving.inference.errors import RequestError
from serving.inference.metrics import ObserveRequests
from serving.inference.service import InferenceService, ModelSet

__all__ = ["create_app", "parse_rank_body"]

log = logging.getLogger(__name__)
Id = int | str


class BadBody(Exception):
    """A request body that is not the endpoint's JSON shape (a 422 naming ``field``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


RANK_KEYS = frozenset({"user_id", "user", "candidates"})


def _load_json(body: bytes) -> Any:
    try:
        return pydantic_core.from_json(body)
    except ValueError:
        pass
    try:  # what pydantic-core refuses (a lone surrogate escape) but Python's json reads
        return json.loads(body)
    except ValueError as exc:
        raise BadBody(f"JSON decode error: {exc}", "") from None


def parse_rank_body(body: bytes) -> tuple[Any, dict[str, Any], list[Any]]:
    """``(user_id, user, candidates)`` of a ``POST /rank`` body.

    ``user_id``: an integer, a string or null (an integral float is taken as its integer);
    ``user``: an object (default ``{}``); ``candidates``: a list of objects, required.

    Raises:
        BadBody: invalid JSON, not an object, an unknown key, or a value of the wrong JSON
            type (``field``: the key, ``candidates.<i>`` for a candidate that is no object).
    """
    data = _load_json(body)
    if not isinstance(data, dict):
        raise BadBody("Input should be a valid dictionary or object", "")
    for key in data:
        if key not in RANK_KEYS:
            raise BadBody("Extra inputs are not permitted", key)
    if "candidates" not in data:
        raise BadBody("Field required", "candidates")
    user_id = data.get("user_id")
    if isinstance(user_id, float) and user_id.is_integer():
        user_id = int(user_id)
    elif user_id is not None and (type(user_id) is bool or not isinstance(user_id, (int, str))):
        raise BadBody("Input should be a valid integer or string", "user_id")
    user = data.get("user", {})
    if not isinstance(user, dict):
        raise BadBody("Input should be a valid dictionary", "user")
    candidates = data["candidates"]
    if not isinstance(candidates, list):
        raise BadBody("Input should be a valid list", "candidates")
    if set(map(type, candidates)) - {dict}:
        i = next(i for i, c in enumerate(candidates) if not isinstance(c, dict))
        raise BadBody("Input should be a valid dictionary", f"candidates.{i}")
    return user_id, user, candidates


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
    app.add_middleware(ObserveRequests, metrics=metrics)

    @app.exception_handler(RequestError)
    async def bad_request(_: Request, error: RequestError) -> JSONResponse:
        return _error(422, "invalid_request", str(error), error.field, error.row)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        return _error(422, "invalid_request", first.get("msg", "bad request"), ".".join(loc))

    @app.exception_handler(BadBody)
    async def bad_json(_: Request, error: BadBody) -> JSONResponse:
        return _error(422, "invalid_request", str(error), error.field)

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

    def rank_body(body: bytes) -> bytes:
        user_id, user, candidates = parse_rank_body(body)
        models = current("ranker")
        ranker = models.ranker
        assert ranker is not None
        if service.online is not None:
            t = time.perf_counter()
            user, candidates = service.online.fill(user_id, user, candidates, ranker.raw_features)
            metrics.observe_stage("features", time.perf_counter() - t)
        if user_id is not None and "user_id" in ranker.raw_features:
            user = {**user, "user_id": user_id}
        t0 = time.perf_counter()
        feeds = ranker.preprocessor.transform(candidates, user)
        t1 = time.perf_counter()
        probabilities = ranker.run(feeds)
        t2 = time.perf_counter()
        scores = ranker.values(probabilities)
        metrics.observe_stage("preprocess", t1 - t0)
        metrics.observe_stage("inference", t2 - t1)
        reply = {
            "scores": scores.tolist(),
            "probabilities": {t: p.tolist() for t, p in probabilities.items()},
            "model_version": models.version,
        }
        return pydantic_core.to_json(reply)

    @app.post("/rank")
    async def rank(request: Request) -> Response:
        body = await request.body()
        return Response(await run_in_threadpool(rank_body, body), media_type="application/json")

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
