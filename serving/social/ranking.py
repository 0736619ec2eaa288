"""The feed's ranking client: a small interface between the backend and whatever scores posts.

``ChronologicalRanker`` (the default) orders by recency. ``HttpRanker`` posts the candidates to
an inference endpoint (``recsys serve``'s ``POST /rank`` speaks this contract)::

    POST {url}
    {"user_id": 7,
     "user": {"country": "fr", "age_bucket": "25-34", "user_follow_count_log": 2.4},
     "candidates": [{"post_id": 12, "author_id": 3, "topic": "travel", "media_type": "image",
       "post_age_hours": 1.5, "author_followers_log": 4.8, "post_length": 42.0,
       "is_following": 1}, ...]}
    -> 200 {"scores": [0.31, ...]}          # one float per candidate, higher ranks first

The field names are the raw feature names of the training data (the social schema of
:mod:`recsys.data.synthetic.schema` that :mod:`pipelines.social_events` exports), computed the
same way as the export computes them, so a ranker trained on the backend's events reads them
as they were at training time. ``OnnxRanker`` (``ranker.kind: onnx``) runs an exported model
in this process instead (``serving.inference``; ONNX Runtime, no torch).

:class:`RankingClient` wraps any ranker with a deadline: a ranker that is slower than
``timeout_ms``, fails, or answers malformed scores is skipped for that request and the
chronological order is served instead (the design's fallback), counted in ``fallbacks``.
The backend never imports torch: a model reaches it only through this interface.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Viewer:
    """What a ranker sees of the user whose feed is ranked."""

    user_id: int
    country: str | None
    age_bucket: str | None
    user_follow_count_log: float  # log1p(number of accounts the user follows)

    def features(self) -> dict[str, object]:
        """The user-level raw features (everything but ``user_id``)."""
        return {k: v for k, v in asdict(self).items() if k != "user_id"}


@dataclass(frozen=True)
class Candidate:
    """What a ranker sees of one candidate post for one user."""

    post_id: int
    author_id: int
    topic: str | None
    media_type: str | None
    post_age_hours: float
    author_followers_log: float  # log1p(the author's follower count)
    post_length: float  # caption characters
    is_following: int  # 1 if the viewer follows the author (0 for the viewer's own posts)


class Ranker(Protocol):
    name: str

    def scores(self, viewer: Viewer, candidates: Sequence[Candidate]) -> list[float]:
        """One score per candidate, higher first; may raise or be slow (the client copes)."""
        ...


class ChronologicalRanker:
    """Newest first: the score is the post id (ids grow with creation time)."""

    name = "chronological"

    def scores(self, viewer: Viewer, candidates: Sequence[Candidate]) -> list[float]:
        return [float(c.post_id) for c in candidates]


class HttpRanker:
    """Scores from an HTTP inference endpoint (JSON contract in the module docstring)."""

    name = "http"

    def __init__(self, url: str, timeout_s: float) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ranker.url must be an http(s) URL, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s

    def scores(self, viewer: Viewer, candidates: Sequence[Candidate]) -> list[float]:
        body = json.dumps(
            {
                "user_id": viewer.user_id,
                "user": viewer.features(),
                "candidates": [asdict(c) for c in candidates],
            }
        ).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            reply = json.loads(response.read())
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if not isinstance(scores, list) or len(scores) != len(candidates):
            raise ValueError(
                f"ranker at {self.url} answered {len(scores) if isinstance(scores, list) else 0} "
                f"scores for {len(candidates)} candidates"
            )
        values = [float(s) for s in scores]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"ranker at {self.url} answered non-finite scores")
        return values


class RankingClient:
    """Orders candidates with ``ranker`` under a deadline, falling back to chronological."""

    def __init__(self, ranker: Ranker, timeout_ms: float) -> None:
        self.ranker = ranker
        self.timeout_s = timeout_ms / 1000.0
        self.fallbacks = 0
        self._lock = threading.Lock()
        self._pool = (
            None
            if isinstance(ranker, ChronologicalRanker)
            else ThreadPoolExecutor(max_workers=8, thread_name_prefix="ranker")
        )

    @property
    def ranked(self) -> bool:
        """False for the plain chronological order (no ranker call at all)."""
        return self._pool is not None

    def order(self, viewer: Viewer, candidates: Sequence[Candidate]) -> tuple[list[int], str]:
        """Post ids in ranked order and the name of what ordered them (the ranker's, or
        ``chronological`` after a fallback)."""
        chronological = sorted((c.post_id for c in candidates), reverse=True)
        if self._pool is None or not candidates:
            return chronological, "chronological"
        future = self._pool.submit(self.ranker.scores, viewer, candidates)
        try:
            scores = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            return self._fallback(chronological, f"timed out after {self.timeout_s * 1000:.0f} ms")
        except Exception as error:
            return self._fallback(chronological, f"failed: {error}")
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], -candidates[i].post_id))
        return [candidates[i].post_id for i in order], self.ranker.name

    def _fallback(self, chronological: list[int], why: str) -> tuple[list[int], str]:
        with self._lock:
            self.fallbacks += 1
        log.warning("ranker %s %s; serving chronological order", self.ranker.name, why)
        return chronological, "chronological"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def make_ranking_client(
    kind: str, url: str, timeout_ms: float, export_dir: str = "", threads: int = 1
) -> RankingClient:
    """The client for settings ``ranker.kind``: ``chronological``, ``http`` (``ranker.url``) or
    ``onnx`` (an export folder ``ranker.export_dir`` run in this process)."""
    if kind == "chronological":
        return RankingClient(ChronologicalRanker(), timeout_ms)
    if kind == "http":
        return RankingClient(HttpRanker(url, timeout_s=timeout_ms / 1000.0), timeout_ms)
    if kind == "onnx":
        if not export_dir:
            raise ValueError("ranker.kind=onnx needs ranker.export_dir (a `recsys export` folder)")
        from serving.inference.ranker import load_in_process_ranker

        return RankingClient(load_in_process_ranker(export_dir, threads), timeout_ms)
    raise ValueError(f"ranker.kind must be 'chronological', 'http' or 'onnx', got {kind!r}")
