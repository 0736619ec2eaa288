"""Operations: the health check (``/healthz``, outside ``/v1``)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.social.api.deps import BackendDep

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz(backend: BackendDep) -> dict[str, str]:
    backend.storage.metadata.check()
    return {"status": "ok", "storage": backend.settings.storage}
