"""Operations, outside ``/v1``: liveness (``/healthz``: the process answers and its metadata
database is reachable) and readiness (``/readyz``: every dependency, each reported).

``/readyz`` answers 200 with ``status: ready`` when every dependency is up, 200 with
``status: degraded`` when only Redis is down (the API still serves what PostgreSQL can: reads,
login, the feed through the pull path, writes whose Redis side is rebuilt later; what needs
Redis answers 503 with ``Retry-After``), and 503 with ``Retry-After`` when the metadata
database or the blob folder is down (nothing can be served).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.social.api.deps import BackendDep

router = APIRouter(tags=["ops"])

#: Dependencies without which the API serves nothing.
REQUIRED = ("metadata", "blobs")


@router.get("/healthz")
def healthz(backend: BackendDep) -> dict[str, str]:
    backend.storage.metadata.check()
    return {"status": "ok", "storage": backend.settings.storage}


@router.get("/readyz", responses={503: {"description": "a required dependency is down"}})
def readyz(backend: BackendDep) -> JSONResponse:
    states = backend.storage.health()
    dependencies: dict[str, Any] = {
        name: {"ok": error is None, **({"error": error} if error else {})}
        for name, error in states.items()
    }
    down = [name for name, error in states.items() if error is not None]
    if any(name in REQUIRED for name in down):
        status, code = "unavailable", 503
    else:
        status, code = ("degraded" if down else "ready"), 200
    headers = {"Retry-After": "5"} if code == 503 else {}
    body = {"status": status, "storage": backend.settings.storage, "dependencies": dependencies}
    return JSONResponse(body, status_code=code, headers=headers)
