"""Media handling for the social backend: upload sniffing, image and video processing, and
image placeholders (ThumbHash).

- :func:`inspect_upload` (``sniff``): what an upload is, from its bytes, within the limits;
- :func:`process_image` (``images``): renditions and ThumbHash of an image;
- :func:`probe` / :func:`process_video` (``video``): ffprobe/ffmpeg renditions of a video;
- :class:`MediaProcessingError`: processing failed, with a ``reason`` for the uploader.
"""

from serving.social.media.errors import MediaProcessingError
from serving.social.media.images import ProcessedImage, RenditionFile, process_image
from serving.social.media.sniff import (
    ALLOWED_IMAGE_FORMATS,
    ALLOWED_VIDEO_FORMATS,
    UploadInfo,
    heic_supported,
    inspect_upload,
)
from serving.social.media.video import (
    ProcessedVideo,
    RenditionPath,
    VideoInfo,
    available_encoders,
    probe,
    process_video,
)

__all__ = [
    "ALLOWED_IMAGE_FORMATS",
    "ALLOWED_VIDEO_FORMATS",
    "MediaProcessingError",
    "ProcessedImage",
    "ProcessedVideo",
    "RenditionFile",
    "RenditionPath",
    "UploadInfo",
    "VideoInfo",
    "available_encoders",
    "heic_supported",
    "inspect_upload",
    "probe",
    "process_image",
    "process_video",
]
