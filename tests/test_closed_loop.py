"""The closed loop on tiny data: backend traffic -> events export -> train -> export -> serve
-> the feed in ranked mode calls the served model (a real ``recsys serve`` process) and orders
posts by its scores; with the service gone it falls back to chronological. The same export
ranked in process (``ranker.kind=onnx``) gives the same order.

The commands, as README.md lists them::

    python -m pipelines.social_traffic                          # traffic through the backend
    python -m pipelines.social_events out_dir=EVENTS            # events -> Parquet
    recsys train experiment=multitask_social_tiny data=social_events data.path=EVENTS
    recsys export export.run_dir=RUN
    recsys serve serve.run_dir=RUN serve.port=8500
    recsys backend serve backend.ranker.kind=http backend.ranker.url=http://127.0.0.1:8500/rank
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pipelines.social_events.cli import main as social_events
from pipelines.social_traffic.cli import main as social_traffic
from serving.social.backend import open_backend
from serving.social.ranking import Candidate, HttpRanker, RankingClient, Viewer
from serving.social.settings import settings_from_mapping
from tests.recsys_command import run_recsys

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, "-c", "from recsys.cli.main import main; main()", "serve"]


class Recording:
    """A ranker that remembers what the feed sent and what the wrapped ranker answered."""

    def __init__(self, ranker: HttpRanker) -> None:
        self.ranker = ranker
        self.name = ranker.name
        self.calls: list[tuple[Viewer, list[Candidate], list[float]]] = []

    def scores(self, viewer: Viewer, candidates: Sequence[Candidate]) -> list[float]:
        scores = self.ranker.scores(viewer, candidates)
        self.calls.append((viewer, list(candidates), scores))
        return scores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"recsys serve exited: {process.stdout.read()}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if json.loads(reply.read())["status"] == "ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"recsys serve did not answer {url} within {seconds} s")


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("loop")
    backend_dir = f"backend.data_dir={base / 'backend'}"
    traffic = social_traffic([backend_dir])
    assert traffic is not None and traffic.impressions == 360 * 5
    events = social_events([backend_dir, f"out_dir={base / 'events'}"])
    assert events is not None and events.rows == traffic.impressions
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_DATA_ROOT", str(base / "data_root"))
    mp.setenv("RECSYS_OUTPUT_ROOT", str(base / "outputs"))
    run = base / "run"
    run_recsys(
        [
            "train",
            "experiment=multitask_social_tiny",
            "data=social_events",  # no other override: the tiny experiment leaves no generator key
            f"data.path={base / 'events'}",
            "tracking.enabled=false",
            "trainer.max_epochs=10",
            "optimizer.lr=0.01",
            "trainer.batch_size=128",
            f"hydra.run.dir={run}",
        ]
    )
    run_recsys(["export", f"export.run_dir={run}"])
    port = _free_port()
    server = subprocess.Popen(
        [*SERVE, f"serve.run_dir={run}", f"serve.port={port}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", server)
        yield {"base": base, "run": run, "server": server, "port": port}
    finally:
        server.terminate()
        server.wait(timeout=20)
        mp.undo()


def _feed(
    loop: dict, ranking: object | None, **settings: object
) -> tuple[dict, RankingClient, int]:
    """The first ranked page of ``user004`` through a backend over the loop's data."""
    client = RankingClient(ranking, timeout_ms=5_000) if ranking is not None else None  # type: ignore[arg-type]
    config = settings_from_mapping({"data_dir": str(loop["base"] / "backend"), **settings})
    backend = open_backend(config, ranking=client)
    try:
        user = backend.accounts.login("user004", "correct-horse").user.id  # follows 3 authors
        return backend.feed.home(user, limit=50), backend.ranking, user
    finally:
        backend.close()


def test_the_feed_is_ranked_by_the_served_model(loop: dict) -> None:
    url = f"http://127.0.0.1:{loop['port']}/rank"
    recording = Recording(HttpRanker(url, timeout_s=5.0))
    page, client, user = _feed(loop, recording)
    assert page["ranked_by"] == "http" and client.fallbacks == 0
    ((viewer, candidates, scores),) = recording.calls
    assert viewer.user_id == user and viewer.country == "IN"  # user004: countries[4 % 3]
    by_score = sorted(range(len(candidates)), key=lambda i: (-scores[i], -candidates[i].post_id))
    served = [i["id"] for i in page["items"]]
    assert served == [candidates[i].post_id for i in by_score][: len(served)]
    chronological = sorted((c.post_id for c in candidates), reverse=True)
    assert served != chronological[: len(served)]  # the model, not recency, ordered them
    assert len(set(scores)) > 1

    onnx = {"kind": "onnx", "export_dir": str(loop["run"] / "export"), "timeout_ms": 5_000}
    in_process, _, _ = _feed(loop, None, ranker=onnx)  # the backend's ranker.kind=onnx setting
    assert in_process["ranked_by"] == "onnx"
    assert [i["id"] for i in in_process["items"]] == served

    with urllib.request.urlopen(f"http://127.0.0.1:{loop['port']}/metrics") as reply:
        metrics = reply.read().decode()
    assert 'recsys_requests_total{endpoint="/rank",status="200"} 1' in metrics


def test_the_feed_falls_back_when_the_service_is_down(loop: dict) -> None:
    loop["server"].terminate()
    loop["server"].wait(timeout=20)
    url = f"http://127.0.0.1:{loop['port']}/rank"
    page, client, _ = _feed(loop, HttpRanker(url, timeout_s=1.0))
    assert page["ranked_by"] == "chronological" and client.fallbacks == 1
    ids = [i["id"] for i in page["items"]]
    assert ids == sorted(ids, reverse=True)
