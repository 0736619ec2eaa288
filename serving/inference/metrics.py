"""Prometheus-style metrics of the inference service: counters and latency histograms.

A small, dependency-free registry rendered in Prometheus' text exposition format (version
0.0.4) by ``GET /metrics``: ``recsys_requests_total{endpoint,status}``,
``recsys_request_seconds{endpoint}`` and ``recsys_stage_seconds{stage}`` histograms (stages:
``preprocess``, ``inference``, ``retrieve``, ``rank``, ``order``), the request-time input
counters of the preprocessing (absent features, unseen values, dropped history items) and the
model reloads. Thread-safe: every update takes the registry's lock. :class:`ObserveRequests`
is the pure ASGI middleware that counts and times every HTTP request by its route.

Example::

    metrics = Metrics()
    metrics.observe_request("/rank", 200, 0.0031)
    metrics.observe_stage("inference", 0.0012)
    text = metrics.render()     # "# TYPE recsys_requests_total counter\\n..."
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["LATENCY_BUCKETS", "Histogram", "Metrics", "ObserveRequests"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Upper bounds (seconds) of the latency histograms: 0.1 ms to 2.5 s.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Histogram:
    """Cumulative-bucket histogram of one series (``counts[i]``: observations <= bucket i)."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, cumulative = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
        out.append(f"{name}_sum{{{labels}}} {self.total!r}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The service's registry (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.request_seconds: dict[str, Histogram] = defaultdict(Histogram)
        self.stage_seconds: dict[str, Histogram] = defaultdict(Histogram)
        self.reloads: dict[str, int] = defaultdict(int)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.request_seconds[endpoint].observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_seconds[stage].observe(seconds)

    def count_reload(self, result: str) -> None:
        with self._lock:
            self.reloads[result] += 1

    def render(
        self,
        inputs: Mapping[str, Mapping[str, Mapping[str, int]]] = {},
        models: Sequence[Mapping[str, str]] = (),
    ) -> str:
        """The exposition text; ``inputs`` are ``{model: {counter: {feature: count}}}`` from
        the preprocessing counters, ``models`` one label set per loaded model."""
        with self._lock:
            lines = [
                "# HELP recsys_requests_total Requests answered, by endpoint and HTTP status.",
                "# TYPE recsys_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                labels = _labels([("endpoint", endpoint), ("status", str(status))])
                lines.append(f"recsys_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP recsys_request_seconds Request latency inside the service.",
                "# TYPE recsys_request_seconds histogram",
            ]
            for endpoint, hist in sorted(self.request_seconds.items()):
                lines += hist.lines("recsys_request_seconds", _labels([("endpoint", endpoint)]))
            lines += [
                "# HELP recsys_stage_seconds Latency of each stage of a request.",
                "# TYPE recsys_stage_seconds histogram",
            ]
            for stage, hist in sorted(self.stage_seconds.items()):
                lines += hist.lines("recsys_stage_seconds", _labels([("stage", stage)]))
            lines += [
                "# HELP recsys_model_reloads_total Hot reloads of the exports, by result.",
                "# TYPE recsys_model_reloads_total counter",
            ]
            for result, n in sorted(self.reloads.items()):
                lines.append(f'recsys_model_reloads_total{{result="{result}"}} {n}')
        lines += [
            "# HELP recsys_input_events_total Request-time input events (absent features, "
            "unseen values, dropped history items), by model, kind and feature.",
            "# TYPE recsys_input_events_total counter",
        ]
        for model, kinds in sorted(inputs.items()):
            for kind, per_feature in sorted(kinds.items()):
                for feature, n in sorted(per_feature.items()):
                    labels = _labels([("model", model), ("kind", kind), ("feature", feature)])
                    lines.append(f"recsys_input_events_total{{{labels}}} {n}")
        lines += [
            "# HELP recsys_model_info The loaded models (value 1).",
            "# TYPE recsys_model_info gauge",
        ]
        for info in models:
            lines.append(f"recsys_model_info{{{_labels(sorted(info.items()))}}} 1")
        return "\n".join(lines) + "\n"


class ObserveRequests:
    """ASGI middleware: ``metrics.observe_request(route path, status, seconds)`` for every HTTP
    request (``unmatched`` when no route took it; status 500 when the app raised), timed from
    the request's arrival to its last response byte handed to the server."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:  # the router put the matched route into the scope
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
