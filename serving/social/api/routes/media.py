"""Media: uploads (``POST /v1/media``, processed in the background: 202), their status
(``/v1/media/{media_id}``) and the stored blobs (``/v1/blobs/{key}``).

A blob is served only through the signed, expiring URL a read of its media item handed out
(:mod:`serving.social.blobsign`; 403 otherwise), with ``Cache-Control: private, max-age=<the
seconds the URL has left>`` and its key as ETag (a key never changes content), and answers 304
to a matching ``If-None-Match``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from serving.social.api.deps import BackendDep, Id, IdempotencyHeader, Reader, Uploader, idempotency
from serving.social.domain import MAX_ID, NotFound, PayloadTooLarge
from serving.social.media.sniff import CONTENT_TYPES, detect_format

router = APIRouter(tags=["media"])


def _blob_content_type(head: bytes) -> str:
    """The MIME type of a stored blob from its first bytes (blobs carry no metadata)."""
    try:
        return CONTENT_TYPES.get(detect_format(head), "application/octet-stream")
    except Exception:
        return "application/octet-stream"


@router.post("/v1/media", status_code=202)
async def upload(
    request: Request,
    backend: BackendDep,
    user_id: Uploader,
    file: Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, HEIC) or video")],
    idempotency_key: IdempotencyHeader = None,
) -> dict[str, Any]:
    media = backend.settings.media
    limit = max(media.max_image_bytes, media.max_video_bytes)
    declared_length = request.headers.get("content-length")
    if declared_length and declared_length.isdigit() and int(declared_length) > limit + 65_536:
        raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
    key = idempotency(user_id, idempotency_key)
    return await run_in_threadpool(
        backend.media.upload, user_id, data, file.content_type, idempotency=key
    )


@router.get("/v1/media/{media_id}")
def media_status(media_id: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.media.get(user_id, media_id)


@router.get("/v1/blobs/{key}", response_class=FileResponse)
def blob(
    key: str,
    backend: BackendDep,
    exp: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    sig: Annotated[str | None, Query(max_length=64)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    left = backend.ctx.urls.check(key, exp, sig)
    max_age = min(int(left), backend.settings.media.cache_max_age_s)
    cache = f"private, max-age={max_age}"
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
