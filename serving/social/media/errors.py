"""The error media processing raises when an upload cannot be turned into renditions."""

from __future__ import annotations

__all__ = ["MediaProcessingError"]


class MediaProcessingError(Exception):
    """Processing failed for a reason worth showing the uploader (stored as the media row's
    ``reason``): e.g. ``truncated or corrupt image: ...``, ``no video stream``, or the tail of
    ffmpeg's stderr."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
