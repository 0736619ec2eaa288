"""The feed's ranking client against a real HTTP ranker: ranked order with a snapshot cursor, and
the chronological fallback when the ranker is slow, down or answers nonsense."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from serving.social.api import create_app
from serving.social.ranking import Candidate, HttpRanker, RankingClient, Viewer
from serving.social.workers import Workers
from tests.serving.social.api.helpers import follow, post, users


@contextmanager
def ranker_server(mode: str) -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP ranker: ``oldest`` scores older posts higher, ``slow`` sleeps past the
    deadline, ``broken`` answers 500, ``short`` answers too few scores."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            ids = [c["post_id"] for c in body["candidates"]]
            if mode == "slow":
                time.sleep(1.0)
            if mode == "broken":
                self.send_response(500)
                self.end_headers()
                return
            scores = [-float(i) for i in ids] if mode != "short" else [1.0]
            payload = json.dumps({"scores": scores}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/rank", requests
    finally:
        server.shutdown()
        server.server_close()


def _feed_with_ranker(make_backend, url: str):
    backend = make_backend(
        {"ranker": {"kind": "http", "url": url, "timeout_ms": 300}, "feed": {"candidates": 50}}
    )
    return backend, Workers(backend), TestClient(create_app(backend=backend, start_workers=False))


def test_ranked_feed_uses_scores_and_a_stable_snapshot_cursor(make_backend, clock) -> None:
    with ranker_server("oldest") as (url, requests):
        _backend, workers, api = _feed_with_ranker(make_backend, url)
        with api:
            ana, ben = users(api, "ana", "ben")
            follow(api, ana, ben)
            workers.drain()
            made = []
            for i in range(7):
                clock.advance(3_600)
                made.append(post(api, ben, f"p{i}", topic="travel"))
            workers.drain()
            first = api.get("/v1/feed", params={"limit": 3}, headers=ana.auth).json()
            assert first["ranked_by"] == "http"
            got = [i["id"] for i in first["items"]]
            post(api, ben, "new: not in this session's snapshot")
            workers.drain()
            cursor = first["next_cursor"]
            while cursor:
                page = api.get("/v1/feed", params={"limit": 3, "cursor": cursor}, headers=ana.auth)
                got += [i["id"] for i in page.json()["items"]]
                cursor = page.json()["next_cursor"]
            assert got == made  # oldest first, as the ranker scored; no repeats, no gaps
            sent = requests[0]
            assert sent["user_id"] == ana.id
            candidate = sent["candidates"][0]
            assert candidate["topic"] == "travel" and candidate["is_following"] == 1
            assert candidate["post_age_hours"] == pytest.approx(0.0, abs=1e-6)
            # the training data's names and transforms (pipelines.social_events)
            assert candidate["author_followers_log"] == pytest.approx(math.log1p(1))
            assert candidate["post_length"] == float(len("p6"))
            assert set(sent["user"]) == {"country", "age_bucket", "user_follow_count_log"}
            assert sent["user"]["user_follow_count_log"] == pytest.approx(math.log1p(1))
            expired = api.get("/v1/feed", params={"cursor": "rnope.3"}, headers=ana.auth)
            assert expired.status_code == 410


@pytest.mark.parametrize("mode", ["slow", "broken", "short"])
def test_ranker_failures_fall_back_to_chronological(make_backend, mode) -> None:
    with ranker_server(mode) as (url, _):
        backend, workers, api = _feed_with_ranker(make_backend, url)
        with api:
            ana, ben = users(api, "ana", "ben")
            follow(api, ana, ben)
            workers.drain()
            made = [post(api, ben, f"p{i}") for i in range(4)]
            workers.drain()
            started = time.monotonic()
            reply = api.get("/v1/feed", headers=ana.auth).json()
            elapsed = time.monotonic() - started
            assert reply["ranked_by"] == "chronological"
            assert [i["id"] for i in reply["items"]] == made[::-1]
            assert backend.ranking.fallbacks == 1
            if mode == "slow":
                assert elapsed < 0.9  # the deadline (300 ms) cut the 1 s ranker short


def test_ranking_client_unit() -> None:
    client = RankingClient(HttpRanker("http://127.0.0.1:9/never", timeout_s=0.05), 50)
    cands = [Candidate(i, 1, None, "text", 0.0, 0.0, 0.0, 1) for i in (3, 9, 5)]
    order, by = client.order(Viewer(1, None, None, 0.0), cands)
    assert (order, by) == ([9, 5, 3], "chronological") and client.fallbacks == 1
    with pytest.raises(ValueError, match="http"):
        HttpRanker("ftp://x", 1.0)
    client.close()
