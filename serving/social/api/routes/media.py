"""Media: uploads (``POST /v1/media``, streamed to a temporary file with the byte limit enforced
while reading, processed in the background: 202), their status
(``/v1/media/{media_id}``) and the stored blobs (``/v1/blobs/{key}``).

A blob is served only through the signed, expiring URL a read of its media item handed out
(:mod:`serving.social.blobsign`; 403 otherwise), with ``Cache-Control: private, max-age=<the
seconds the URL has left>`` and its key as ETag (a key never changes content), and answers 304
to a matching ``If-None-Match``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from serving.social.api.deps import BackendDep, Id, IdempotencyHeader, Reader, Uploader, idempotency
from serving.social.domain import MAX_ID, BadRequest, NotFound, PayloadTooLarge, UnsupportedMedia
from serving.social.media.sniff import CONTENT_TYPES, detect_format

router = APIRouter(tags=["media"])


def _blob_content_type(head: bytes) -> str:
    """The MIME type of a stored blob from its first bytes (blobs carry no metadata)."""
    try:
        return CONTENT_TYPES.get(detect_format(head), "application/octet-stream")
    except Exception:
        return "application/octet-stream"


#: The multipart body of an upload as the OpenAPI document shows it (the route reads the
#: stream itself, see :func:`_read_upload`).
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an image (JPEG, PNG, WebP, HEIC) or video",
                        }
                    },
                }
            }
        },
    }
}

#: Bytes of multipart framing (boundaries, part headers) allowed beyond the file's own limit.
MULTIPART_OVERHEAD = 64 * 1024


async def _capped(stream: AsyncIterator[bytes], cap: int, limit: int) -> AsyncIterator[bytes]:
    """``stream``, raising 413 as soon as more than ``cap`` bytes came (the rest is never
    read)."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > cap:
            raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
        yield chunk


async def _read_upload(request: Request, limit: int) -> UploadFile:
    """The ``file`` part of the multipart body, streamed into a temporary file (in memory up to
    1 MiB, then on disk) while the byte limit is enforced on the stream itself."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMedia("an upload is a multipart/form-data body", field="file")
    parser = MultiPartParser(
        request.headers,
        _capped(request.stream(), limit + MULTIPART_OVERHEAD, limit),
        max_files=1,
        max_fields=8,
        max_part_size=MULTIPART_OVERHEAD,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise BadRequest(f"malformed multipart body: {error.message}", field="file") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        await form.close()
        raise BadRequest("the multipart body needs a file part named 'file'", field="file")
    if (file.size or 0) > limit:
        await form.close()
        raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
    return file


@router.post("/v1/media", status_code=202, openapi_extra=UPLOAD_BODY)
async def upload(
    request: Request,
    backend: BackendDep,
    user_id: Uploader,
    idempotency_key: IdempotencyHeader = None,
) -> dict[str, Any]:
    media = backend.settings.media
    limit = max(media.max_image_bytes, media.max_video_bytes)
    declared_length = request.headers.get("content-length")
    if (
        declared_length
        and declared_length.isdigit()
        and int(declared_length) > limit + MULTIPART_OVERHEAD
    ):
        raise PayloadTooLarge(f"upload larger than {limit} bytes", field="file")
    file = await _read_upload(request, limit)
    key = idempotency(user_id, idempotency_key)
    try:
        return await run_in_threadpool(
            backend.media.upload, user_id, file.file, file.content_type, idempotency=key
        )
    finally:
        await file.close()


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
