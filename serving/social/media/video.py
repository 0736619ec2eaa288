"""Video processing with ffprobe and ffmpeg (run as subprocesses, each with a timeout).

:func:`probe` reads the dimensions, duration and codec of the first video stream.
:func:`process_video` writes, into a work folder:

- ``h264.mp4``: H.264 (``libx264``, ``fast`` preset, CRF 23, ``yuv420p``) with AAC audio when the
  source has audio, ``+faststart`` so playback starts before the download ends;
- ``av1.mp4``: AV1 (``libsvtav1`` preset 10, else ``libaom-av1`` with ``cpu-used 8`` and
  ``row-mt``) with AAC audio, in MP4 as well;
- ``poster.jpg``: one JPEG frame, the same size as the videos.

Renditions are files, not bytes (videos can be large): each :class:`RenditionPath` names its file,
and :meth:`RenditionPath.store` moves it into a blob store with ``put_file``. The caller owns the
work folder and removes it afterwards.

Sizing: the short side is scaled down to at most ``settings.video_height`` (so 720 means 720p
for landscape and portrait video alike), never up, and both sides are rounded down to even
numbers (4:2:0 chroma needs them). The rotation a phone stores in the container is applied
(ffmpeg autorotates), so the output is upright and ``probe`` reports the upright size. All
container metadata (GPS location of phone videos included) is dropped.

Which codecs are produced follows ``settings.video_codecs`` (``h264``, ``av1``). A missing AV1
encoder only drops that rendition (with a note in :attr:`ProcessedVideo.notes`), and so does a
failed AV1 encode: the H.264 rendition plays everywhere. A missing H.264 encoder, a missing
ffmpeg, and any failure or timeout of the H.264 or poster step raise
:class:`MediaProcessingError`. Tests (and operators) can pass ``encoders=`` to
:func:`process_video` to simulate an ffmpeg without some encoder.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.social.media.errors import MediaProcessingError

if TYPE_CHECKING:
    from serving.social.settings import MediaSettings

__all__ = [
    "AV1_ENCODERS",
    "H264_ENCODER",
    "ProcessedVideo",
    "RenditionPath",
    "VideoInfo",
    "available_encoders",
    "output_size",
    "probe",
    "process_video",
]

H264_ENCODER = "libx264"
AV1_ENCODERS = ("libsvtav1", "libaom-av1")
"""AV1 encoders in order of preference (SVT-AV1 is much faster at a similar quality)."""

_STDERR_TAIL = 1500
_POSTER_QUALITY = 3  # mjpeg -q:v, 2 (best) .. 31


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file, as ffprobe reports it. ``width``/``height`` are the
    upright (display) size, after the container's rotation; ``rotation`` is that rotation in
    degrees (0, 90, 180, 270)."""

    width: int
    height: int
    duration: float
    codec: str
    has_audio: bool = False
    rotation: int = 0
    format_name: str = ""


@dataclass(frozen=True)
class RenditionPath:
    """One rendition written to a file in the work folder (videos and their poster)."""

    name: str
    path: Path
    content_type: str
    width: int
    height: int

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class ProcessedVideo:
    """The result of :func:`process_video`. ``width``/``height`` are the renditions' size;
    ``renditions`` holds ``h264`` and/or ``av1`` (as configured and possible) and ``poster``;
    ``notes`` says what was skipped and why; ``thumbhash`` is the poster's placeholder."""

    width: int
    height: int
    duration: float
    renditions: list[RenditionPath]
    notes: list[str] = field(default_factory=list)
    thumbhash: bytes = b""
    source: VideoInfo | None = None


# --- subprocess helpers -------------------------------------------------------------------------


def _tail(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = (text or "").strip()
    return text[-_STDERR_TAIL:] if len(text) > _STDERR_TAIL else text


def _run(
    args: Sequence[str], settings: MediaSettings, what: str
) -> subprocess.CompletedProcess[bytes]:
    """Runs a tool; missing binary, timeout or non-zero exit raise MediaProcessingError."""
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            timeout=settings.ffmpeg_timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise MediaProcessingError(
            f"{what}: {args[0]!r} not found (is ffmpeg installed?)"
        ) from None
    except PermissionError as error:
        raise MediaProcessingError(f"{what}: cannot run {args[0]!r}: {error}") from None
    except subprocess.TimeoutExpired as error:
        raise MediaProcessingError(
            f"{what}: timed out after {settings.ffmpeg_timeout_s:g} s: {_tail(error.stderr)}"
        ) from None
    if result.returncode != 0:
        raise MediaProcessingError(
            f"{what}: exit status {result.returncode}: {_tail(result.stderr)}"
        )
    return result


# --- probing ------------------------------------------------------------------------------------


def _rotation(stream: dict[str, Any]) -> int:
    """The stream's rotation in degrees, normalized to 0/90/180/270."""
    value: Any = None
    for side in stream.get("side_data_list") or ():
        if "rotation" in side:
            value = side["rotation"]
            break
    if value is None:
        value = (stream.get("tags") or {}).get("rotate")
    try:
        return round(float(value)) % 360 if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def probe(path: Path | str, settings: MediaSettings) -> VideoInfo:
    """Reads the first video stream of ``path`` with ffprobe.

    Raises:
        MediaProcessingError: ffprobe missing, the file unreadable, no video stream, no known
            duration, or longer than ``settings.max_video_seconds``.
    """
    result = _run(
        [
            settings.ffprobe,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        settings,
        "unreadable video (ffprobe)",
    )
    try:
        report = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError as error:
        raise MediaProcessingError(f"unreadable video: ffprobe printed no JSON ({error})") from None
    streams = report.get("streams") or []
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not videos:
        raise MediaProcessingError("no video stream in the file")
    stream = videos[0]
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width < 1 or height < 1:
        raise MediaProcessingError(f"video stream has no usable size ({width}x{height})")
    rotation = _rotation(stream)
    if rotation in (90, 270):
        width, height = height, width
    fmt = report.get("format") or {}
    duration = _float(fmt.get("duration"))
    if duration is None:
        duration = _float(stream.get("duration"))
    if duration is None:
        raise MediaProcessingError("could not determine the video's duration")
    if duration > settings.max_video_seconds:
        raise MediaProcessingError(
            f"video is too long: {duration:.1f} s; the limit is {settings.max_video_seconds:g} s"
        )
    return VideoInfo(
        width=width,
        height=height,
        duration=duration,
        codec=str(stream.get("codec_name") or "unknown"),
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        rotation=rotation,
        format_name=str(fmt.get("format_name") or ""),
    )


# --- encoders -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _encoders_of(ffmpeg: str, timeout_s: float) -> frozenset[str]:
    try:
        result = subprocess.run(
            [ffmpeg, "-hide_banner", "-encoders"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise MediaProcessingError(
            f"ffmpeg not found: {ffmpeg!r} (install ffmpeg or set media.ffmpeg)"
        ) from None
    except (PermissionError, subprocess.TimeoutExpired) as error:
        raise MediaProcessingError(f"cannot run ffmpeg {ffmpeg!r}: {error}") from None
    if result.returncode != 0:
        raise MediaProcessingError(
            f"ffmpeg {ffmpeg!r} -encoders failed (exit {result.returncode}): {_tail(result.stderr)}"
        )
    return frozenset(parse_encoders(result.stdout.decode("utf-8", "replace")))


def parse_encoders(listing: str) -> set[str]:
    """Encoder names from the output of ``ffmpeg -encoders`` (the lines after ``------``)."""
    names: set[str] = set()
    started = False
    for line in listing.splitlines():
        if not started:
            started = line.strip().startswith("---")
            continue
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6:
            names.add(parts[1])
    return names


def available_encoders(settings: MediaSettings) -> set[str]:
    """The encoders ``settings.ffmpeg`` has (cached per binary; failures are not cached).

    Raises:
        MediaProcessingError: ffmpeg is missing or does not run.
    """
    return set(_encoders_of(settings.ffmpeg, min(settings.ffmpeg_timeout_s, 60.0)))


# --- transcoding --------------------------------------------------------------------------------


def output_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """The rendition size: the short side at most ``max_short_side`` (never upscaled), the
    aspect ratio kept, both sides even and at least 2."""
    short = min(width, height)
    scale = min(1.0, max_short_side / short) if short > 0 else 1.0
    w, h = width * scale, height * scale
    return max(2, int(w) // 2 * 2), max(2, int(h) // 2 * 2)


def _ffmpeg_input(settings: MediaSettings, src: Path, seek: Sequence[str] = ()) -> list[str]:
    """The start of every transcode: ffmpeg, quiet and non-interactive, overwriting, reading
    ``src`` (after the input options ``seek``), keeping its first video stream only and none
    of its container metadata."""
    return [
        settings.ffmpeg, "-hide_banner", "-nostdin", "-y", *seek, "-i", str(src),
        "-map", "0:v:0", "-map_metadata", "-1",
    ]  # fmt: skip


def _video_filter(width: int, height: int) -> str:
    return f"scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p"


def _encode_args(
    settings: MediaSettings,
    src: Path,
    dst: Path,
    size: tuple[int, int],
    video_codec: list[str],
    has_audio: bool,
) -> list[str]:
    args = [
        *_ffmpeg_input(settings, src),
        "-map_chapters",
        "-1",
        "-vf",
        _video_filter(*size),
        *video_codec,
        "-pix_fmt",
        "yuv420p",
    ]
    if has_audio:
        args += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    args += ["-movflags", "+faststart", "-f", "mp4", str(dst)]
    return args


def _av1_codec_args(encoder: str) -> list[str]:
    if encoder == "libsvtav1":
        return ["-c:v", "libsvtav1", "-preset", "10", "-crf", "35", "-g", "240"]
    return [
        "-c:v",
        "libaom-av1",
        "-cpu-used",
        "8",
        "-row-mt",
        "1",
        "-crf",
        "35",
        "-b:v",
        "0",
        "-g",
        "240",
    ]


def _poster(
    src: Path, dst: Path, size: tuple[int, int], duration: float, settings: MediaSettings
) -> None:
    """Writes one JPEG frame: a little into the video (past a black first frame), else the first."""
    for at in (min(1.0, duration / 3), 0.0):
        args = [
            *_ffmpeg_input(settings, src, seek=["-ss", f"{at:.3f}"]),
            "-frames:v",
            "1",
            "-vf",
            f"scale={size[0]}:{size[1]}:flags=bicubic,setsar=1",
            "-q:v",
            str(_POSTER_QUALITY),
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            str(dst),
        ]
        _run(args, settings, "poster frame failed (ffmpeg)")
        if dst.is_file() and dst.stat().st_size > 0:
            return
    raise MediaProcessingError("poster frame failed: ffmpeg wrote no frame")


def _poster_thumbhash(path: Path) -> bytes:
    """ThumbHash of the poster (empty if Pillow cannot read it; the poster itself is fine)."""
    try:
        from PIL import Image

        from serving.social.media.thumbhash import MAX_SIDE, image_to_thumbhash

        with Image.open(path) as image:
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            small = image.convert("RGB")
        small.thumbnail((MAX_SIDE, MAX_SIDE))
        return image_to_thumbhash(small)
    except Exception:  # the placeholder is optional
        return b""


def process_video(
    src: Path | str,
    workdir: Path | str,
    settings: MediaSettings,
    *,
    encoders: Collection[str] | None = None,
) -> ProcessedVideo:
    """Probes ``src`` and writes its renditions into ``workdir`` (created if missing).

    ``encoders`` overrides the set :func:`available_encoders` would report (to test a missing
    encoder); ``None`` asks ffmpeg.

    Raises:
        MediaProcessingError: unreadable/too long input, ffmpeg missing, H.264 requested but
            ``libx264`` missing, no video codec possible, or an ffmpeg failure/timeout (with the
            tail of its stderr).
    """
    src, workdir = Path(src), Path(workdir)
    info = probe(src, settings)
    have = set(encoders) if encoders is not None else available_encoders(settings)
    if shutil.which(settings.ffmpeg) is None and not Path(settings.ffmpeg).is_file():
        raise MediaProcessingError(f"ffmpeg not found: {settings.ffmpeg!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    size = output_size(info.width, info.height, settings.video_height)
    notes: list[str] = []
    renditions: list[RenditionPath] = []

    codecs = list(dict.fromkeys(settings.video_codecs))
    for codec in codecs:
        if codec not in ("h264", "av1"):
            notes.append(f"{codec} skipped: unknown codec (known: h264, av1)")
    if "h264" in codecs:
        if H264_ENCODER not in have:
            raise MediaProcessingError(
                f"h264 requested but this ffmpeg has no H.264 encoder ({H264_ENCODER})"
            )
        dst = workdir / "h264.mp4"
        codec_args = [
            "-c:v", H264_ENCODER, "-preset", "fast", "-crf", "23",
            "-profile:v", "high", "-tag:v", "avc1",
        ]  # fmt: skip
        _run(
            _encode_args(settings, src, dst, size, codec_args, info.has_audio),
            settings,
            "h264 transcode failed (ffmpeg)",
        )
        renditions.append(RenditionPath("h264", dst, "video/mp4", *size))
    if "av1" in codecs:
        encoder = next((name for name in AV1_ENCODERS if name in have), None)
        if encoder is None:
            notes.append("av1 skipped: no AV1 encoder (libsvtav1/libaom-av1) in this ffmpeg")
        else:
            dst = workdir / "av1.mp4"
            try:
                _run(
                    _encode_args(
                        settings, src, dst, size, _av1_codec_args(encoder), info.has_audio
                    ),
                    settings,
                    f"av1 transcode failed ({encoder})",
                )
            except MediaProcessingError as error:
                notes.append(f"av1 skipped: {error.reason}")
                dst.unlink(missing_ok=True)
            else:
                renditions.append(RenditionPath("av1", dst, "video/mp4", *size))
    if not renditions:
        raise MediaProcessingError(
            f"no video rendition could be made (codecs {codecs}): " + "; ".join(notes)
        )

    poster = workdir / "poster.jpg"
    _poster(src, poster, size, info.duration, settings)
    renditions.append(RenditionPath("poster", poster, "image/jpeg", *size))
    return ProcessedVideo(
        width=size[0],
        height=size[1],
        duration=info.duration,
        renditions=renditions,
        notes=notes,
        thumbhash=_poster_thumbhash(poster),
        source=info,
    )
