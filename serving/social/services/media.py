"""Media: upload (answers at once with status ``processing``), asynchronous processing by the
``media`` worker, and status reads.

Upload checks the bytes before anything is stored (format by magic bytes against the allow-list,
declared MIME type, byte limit, pixel limit from the header), stores the original in the
content-addressed blob store, and commits the media row together with a ``media.uploaded``
outbox event. The worker then makes the renditions (images: 1440/250 px and a ThumbHash;
video: H.264 + AV1 + poster) and moves the status to ``ready``, or to ``failed`` with a reason.
A failure removes every rendition blob that attempt wrote, so nothing half-processed stays
behind; the original stays with the failed row (its status and reason say what was wrong).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from serving.social.context import Context
from serving.social.domain import Event, IdempotencyKey, NotFound, Rendition
from serving.social.media import MediaProcessingError
from serving.social.media.images import RenditionFile, process_image
from serving.social.media.sniff import ALLOWED_IMAGE_FORMATS, detect_format, inspect_upload
from serving.social.media.video import RenditionPath, process_video
from serving.social.services.shared import media_visible, remember, replayed
from serving.social.storage.blobs import stream_digest
from serving.social.views import media_view

log = logging.getLogger(__name__)

#: Bytes of an upload read to identify it (a video's checks need no more).
SNIFF_BYTES = 64 * 1024

STREAM = "media"
GROUP = "media"


class MediaService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- API side -----------------------------------------------------------------------------

    def upload(
        self,
        owner_id: int,
        source: BinaryIO,
        declared_content_type: str | None,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> dict:
        """Validates and stores the original read from ``source`` (a file, e.g. the upload's
        temporary file: a video is never held in memory, an image only up to its byte limit);
        returns the media view (status ``processing``). Raises a 4xx
        :class:`~serving.social.domain.BackendError` for bad input, storing nothing. A retry
        with the same ``idempotency`` key answers the first upload again."""
        settings = self.ctx.settings.media
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        head = source.read(SNIFF_BYTES)
        if size <= settings.max_image_bytes and detect_format(head) in ALLOWED_IMAGE_FORMATS:
            head += source.read()  # an image is checked (and later decoded) whole
        info = inspect_upload(head, declared_content_type, settings, size=size)
        blobs = self.ctx.storage.blobs
        key_existed = False
        key = None
        now = self.ctx.clock.now()
        try:
            source.seek(0)
            key_existed = blobs.exists(stream_digest(source))
            key = blobs.put_stream(source)
            with self.ctx.storage.metadata.transaction() as tx:
                request = {"sha256": key, "content_type": info.content_type}
                prior = replayed(tx, idempotency, "media.upload", request, now)
                if prior is not None:
                    return prior
                media = tx.create_media(owner_id, info.kind, info.content_type, key, now)
                tx.add_outbox(Event(STREAM, "media.uploaded", {"media_id": media.id}, ts=now))
                tx.touch_user(owner_id, now)
                return remember(tx, idempotency, media_view(media, self.ctx.urls))
        except BaseException:
            if key is not None and not key_existed:
                blobs.delete(key)
            raise

    def get(self, viewer_id: int, media_id: int) -> dict[str, Any]:
        """The item as ``viewer_id`` may see it (:func:`~.shared.media_visible`: the owner, or
        a viewer of the post or active story that shows it); 404 otherwise, as if missing."""
        with self.ctx.storage.metadata.reading() as tx:
            media = tx.get_media(media_id)
            visible = media is not None and media_visible(
                tx, viewer_id, media, self.ctx.clock.now()
            )
        if not visible or media is None:
            raise NotFound(f"media {media_id} not found", field="media_id")
        return media_view(media, self.ctx.urls)

    # --- worker side --------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if event.kind == "media.uploaded":
            self.process(int(event.payload["media_id"]))

    def process(self, media_id: int) -> str:
        """Processes one uploaded item; returns its final status. Idempotent: an item no longer
        ``processing`` (already done by an earlier delivery) is left alone. Unexpected errors
        propagate (the message stays pending and is retried); a
        :class:`~serving.social.media.MediaProcessingError` marks the item failed."""
        with self.ctx.storage.metadata.transaction() as tx:
            media = tx.get_media(media_id)
        if media is None or media.status != "processing":
            return media.status if media is not None else "missing"
        written: list[str] = []
        try:
            if media.raw_key is None or not self.ctx.storage.blobs.exists(media.raw_key):
                raise MediaProcessingError("the original upload is missing from the blob store")
            if media.kind == "image":
                renditions, extra = self._image(media.raw_key, written)
            else:
                renditions, extra = self._video(media.raw_key, written)
        except MediaProcessingError as error:
            self._discard(written)
            self.fail(media_id, error.reason)
            return "failed"
        except BaseException:
            self._discard(written)
            raise
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            current = tx.get_media(media_id)
            if current is None or current.status != "processing":
                return current.status if current is not None else "missing"
            tx.update_media(media_id, "ready", now, renditions=renditions, **extra)
        return "ready"

    def fail(self, media_id: int, reason: str) -> None:
        """Marks a still-processing item failed with ``reason`` (also used by the worker when a
        message keeps failing for unexpected reasons)."""
        log.info("media %s failed: %s", media_id, reason)
        with self.ctx.storage.metadata.transaction() as tx:
            current = tx.get_media(media_id)
            if current is not None and current.status == "processing":
                tx.update_media(media_id, "failed", self.ctx.clock.now(), reason=reason[:1000])

    # --- processing ---------------------------------------------------------------------------

    def _store(self, rendition: RenditionFile | RenditionPath, written: list[str]) -> Rendition:
        """Puts one rendition (bytes or a file) in the blob store and returns its record;
        ``written`` collects the keys this attempt added, to remove them if it fails."""
        blobs = self.ctx.storage.blobs
        digest = hashlib.sha256()
        if isinstance(rendition, RenditionFile):
            digest.update(rendition.data)
        else:
            with rendition.path.open("rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
        new = not blobs.exists(digest.hexdigest())
        size = rendition.size_bytes
        if isinstance(rendition, RenditionFile):
            key = blobs.put(rendition.data)
        else:
            key = blobs.put_file(rendition.path)
        if new:
            written.append(key)
        return Rendition(
            rendition.name, key, rendition.content_type, rendition.width, rendition.height, size
        )

    def _image(self, raw_key: str, written: list[str]) -> tuple[list[Rendition], dict]:
        result = process_image(self.ctx.storage.blobs.get(raw_key), self.ctx.settings.media)
        renditions = [self._store(r, written) for r in result.renditions]
        extra = {
            "width": result.width,
            "height": result.height,
            "thumbhash": base64.b64encode(result.thumbhash).decode(),
        }
        return renditions, extra

    def _video(self, raw_key: str, written: list[str]) -> tuple[list[Rendition], dict]:
        source = self.ctx.storage.blobs.path(raw_key)
        with tempfile.TemporaryDirectory(prefix="media-") as workdir:
            result = process_video(source, Path(workdir), self.ctx.settings.media)
            renditions = [self._store(r, written) for r in result.renditions]
        extra: dict[str, Any] = {"width": result.width, "height": result.height}
        if result.thumbhash:
            extra["thumbhash"] = base64.b64encode(result.thumbhash).decode()
        if result.notes:
            extra["reason"] = "; ".join(result.notes)
        return renditions, extra

    def _discard(self, written: list[str]) -> None:
        for key in written:
            self.ctx.storage.blobs.delete(key)
