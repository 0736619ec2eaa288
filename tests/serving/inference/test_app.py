"""The inference service over HTTP (FastAPI's test client on the real app and real exports):
the feed's /rank contract, /retrieve, /recommend, health, metadata, metrics, 422s naming the
field, refusal to start on a bad export, and hot reload without a failed request."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.data.prepared import PreparedDataset
from recsys.export.manifest import ManifestError
from serving.inference.app import create_app
from serving.inference.ranker import OnnxRanker
from serving.inference.service import InferenceService
from serving.inference.settings import ServeSettings, serve_settings
from tests.serving.inference.exports import export_social_ranker, export_social_two_tower

ROOT = Path(__file__).resolve().parents[3]
CANDIDATES = [
    {"post_id": 12, "author_id": 3, "topic": "t1", "media_type": "image", "post_age_hours": 1.5},
    {"post_id": 40, "author_id": 7, "topic": "t2", "media_type": "video", "post_age_hours": 30},
    {"post_id": 99999, "author_id": 8, "topic": None, "is_following": 1},
]


@pytest.fixture(scope="module")
def exports(social: PreparedDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("app")
    export_social_ranker(social, base / "ranker" / "export")
    export_social_two_tower(base / "tt" / "export")
    return {"ranker": base / "ranker", "retrieval": base / "tt", "base": base}


def client(exports: dict[str, Path], **settings: Any) -> TestClient:
    values = {"run_dir": str(exports["ranker"]), "retrieval_run_dir": str(exports["retrieval"])}
    values |= {"reload_interval_s": 0, "item_feature": "post_id", **settings}
    return TestClient(create_app(InferenceService(serve_settings(values))))


def test_rank_speaks_the_feed_contract(exports: dict[str, Path]) -> None:
    with client(exports) as api:
        body = {
            "user_id": 7,
            "user": {"country": "fr", "age_bucket": None},
            "candidates": CANDIDATES,
        }
        reply = api.post("/rank", json=body)
        assert reply.status_code == 200, reply.text
        got = reply.json()
        ranker = OnnxRanker.load(exports["ranker"] / "export")
        rows = [{"user_id": 7, "country": "fr", "age_bucket": None, **c} for c in CANDIDATES]
        probabilities = ranker.score(rows)
        assert got["scores"] == ranker.values(probabilities).tolist()
        for task, values in probabilities.items():
            assert got["probabilities"][task] == values.tolist()
        assert got["model_version"] == 1
        # a candidate's own value wins over the user-level one
        override = {**body, "candidates": [{**CANDIDATES[0], "country": "de"}]}
        alone = api.post("/rank", json=override).json()["scores"]
        expected = ranker.values(ranker.score([{**rows[0], "country": "de"}])).tolist()
        assert alone == expected
        # an integral float user id is its integer; a lone surrogate is read as Python reads it
        as_float = api.post("/rank", json={**body, "user_id": 7.0}).json()["scores"]
        assert as_float == got["scores"]
        odd = b'{"user_id": 7, "candidates": [{"topic": "\\ud800"}]}'
        reply = api.post("/rank", content=odd, headers={"content-type": "application/json"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/json"


def _fails(api: TestClient, path: str, body: Any) -> dict[str, Any]:
    reply = api.post(path, json=body)
    assert reply.status_code == 422, reply.text
    return reply.json()["error"]


def test_bad_requests_are_422_naming_the_field(exports: dict[str, Path]) -> None:
    with client(exports, max_candidates=3) as api:
        error = _fails(api, "/rank", {"user_id": 1, "candidates": [{"post_id": 1}, {"nope": 2}]})
        assert (
            error["field"] == "nope" and error["row"] == 1 and "unknown feature" in error["message"]
        )
        error = _fails(api, "/rank", {"candidates": [{"topic": {"a": 1}}]})
        assert error["field"] == "topic" and error["row"] == 0
        error = _fails(api, "/rank", {"candidates": [{"post_age_hours": "old"}]})
        assert error["field"] == "post_age_hours"
        assert _fails(api, "/rank", {"candidates": []})["field"] == "rows"
        assert (
            "more than the maximum of 3"
            in _fails(api, "/rank", {"candidates": [{}] * 4})["message"]
        )
        assert _fails(api, "/rank", {"user_id": 1})["field"] == "candidates"
        assert _fails(api, "/rank", {"candidates": [{}], "extra": 1})["field"] == "extra"
        assert _fails(api, "/retrieve", {"user_id": "nobody", "k": 3})["field"] == "user_id"
        assert _fails(api, "/retrieve", {"user_id": "1", "k": 0})["field"] == "k"
        assert _fails(api, "/recommend", {"user_id": "1", "k": 5, "n": 9})["field"] == "n"
        bad_json = api.post(
            "/rank", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 422 and "error" in bad_json.json()
        # the /rank body is checked by hand: the same 422s, naming the field
        assert _fails(api, "/rank", [CANDIDATES[0]])["field"] == ""
        assert _fails(api, "/rank", {"candidates": {"a": 1}})["field"] == "candidates"
        assert _fails(api, "/rank", {"candidates": [{}, [1]]})["field"] == "candidates.1"
        assert _fails(api, "/rank", {"user": [1], "candidates": [{}]})["field"] == "user"
        for bad_id in (True, 1.5, [1], {"id": 1}):
            assert (
                _fails(api, "/rank", {"user_id": bad_id, "candidates": [{}]})["field"] == "user_id"
            )
        error = _fails(api, "/rank", {"user": {"colour": "red"}, "candidates": [{}]})
        assert (error["field"], error["row"]) == ("colour", None)
        error = _fails(api, "/rank", {"user": {"country": 3.5}, "candidates": [{}]})
        assert error["field"] == "country" and "shared value" in error["message"]


def test_retrieve_and_recommend(exports: dict[str, Path]) -> None:
    with client(exports) as api:
        user = api.get("/metadata").json()
        assert user["recommend"] is True
        import pyarrow.parquet as pq

        users = pq.read_table(exports["retrieval"] / "export" / "retrieval" / "users.parquet")
        uid = users.column("id")[0].as_py()
        got = api.post("/retrieve", json={"user_id": uid, "k": 10}).json()
        assert len(got["items"]) == 10 and got["scores"] == sorted(got["scores"], reverse=True)
        page = api.post("/recommend", json={"user_id": uid, "k": 30, "n": 5}).json()
        assert len(page["item_ids"]) == 5 and set(page["item_ids"]) <= set(
            api.post("/retrieve", json={"user_id": uid, "k": 30}).json()["items"]
        )
        assert page["values"] == sorted(page["values"], reverse=True)
        assert set(page["latency_ms"]) == {"retrieve", "rank", "order", "total"}


def test_health_metadata_and_metrics(exports: dict[str, Path]) -> None:
    with client(exports) as api:
        health = api.get("/health").json()
        assert health["status"] == "ok" and health["ranker"] and health["retriever"]
        meta = api.get("/metadata").json()
        assert meta["ranker"]["kind"] == "ranker" and meta["retriever"]["kind"] == "two_tower"
        assert meta["ranker"]["run"]["experiment"] == "social_test"
        api.post("/rank", json={"user_id": 1, "candidates": CANDIDATES})
        api.post("/rank", json={"candidates": []})
        text = api.get("/metrics").text
        assert 'recsys_requests_total{endpoint="/rank",status="200"} 1' in text
        assert 'recsys_requests_total{endpoint="/rank",status="422"} 1' in text
        assert 'recsys_stage_seconds_count{stage="inference"} 1' in text
        assert 'recsys_input_events_total{model="ranker",kind="absent",feature="country"} 3' in text
        assert 'recsys_model_info{class="MultiTaskRanker"' in text
        assert api.get("/nowhere").status_code == 404
        text = api.get("/metrics").text
        assert 'recsys_requests_total{endpoint="unmatched",status="404"} 1' in text
        assert 'recsys_requests_total{endpoint="/metrics",status="200"} 1' in text
        assert 'recsys_request_seconds_count{endpoint="/rank"} 2' in text


def test_a_bad_export_refuses_to_start(exports: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exports["ranker"] / "export", broken)
    with open(broken / "ranker.onnx", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ManifestError, match="changed after export"):
        InferenceService(ServeSettings(run_dir=str(broken)))
    with pytest.raises(ValueError, match=r"has no manifest\.json"):
        InferenceService(ServeSettings(run_dir=str(tmp_path)))
    from serving.inference.cli import main

    with pytest.raises(SystemExit, match="changed after export"):
        main([f"serve.run_dir={broken}"])
    with pytest.raises(SystemExit, match="unknown key"):
        main(["+serve.nope=1"])


def test_hot_reload_swaps_models_without_failing_a_request(
    social: PreparedDataset, exports: dict[str, Path], tmp_path: Path
) -> None:
    live = tmp_path / "live"
    shutil.copytree(exports["ranker"] / "export", live)
    service = InferenceService(ServeSettings(run_dir=str(live), reload_interval_s=0))
    statuses: list[int] = []
    stop = threading.Event()
    with TestClient(create_app(service)) as api:
        before = api.post("/rank", json={"candidates": CANDIDATES}).json()["scores"]

        def traffic() -> None:
            while not stop.is_set():
                statuses.append(api.post("/rank", json={"candidates": CANDIDATES}).status_code)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            export_social_ranker(social, tmp_path / "next", seed=2)  # a different model
            (live / "manifest.json").unlink()  # as `recsys export` starts: the old set serves
            assert not service.changed() and service.reload()["reloaded"] is False
            shutil.rmtree(live)
            shutil.copytree(tmp_path / "next", live)
            result = service.reload()
            assert result == {"reloaded": True, "version": 2, "error": None}
        finally:
            stop.set()
            thread.join()
        assert statuses and set(statuses) == {200}
        after = api.post("/rank", json={"candidates": CANDIDATES}).json()
        assert after["model_version"] == 2
        assert not np.allclose(after["scores"], before)
        with open(live / "ranker.onnx", "ab") as fh:  # a damaged export does not replace it
            fh.write(b"x")
        reply = api.post("/reload")
        assert reply.status_code == 409 and "changed after export" in reply.json()["error"]
        assert api.post("/rank", json={"candidates": CANDIDATES}).json()["model_version"] == 2
        assert 'recsys_model_reloads_total{result="failed"} 1' in api.get("/metrics").text


def test_the_service_runs_without_torch(exports: dict[str, Path]) -> None:
    code = f"""
import sys
from fastapi.testclient import TestClient
from serving.inference.app import create_app
from serving.inference.service import InferenceService
from serving.inference.settings import ServeSettings
service = InferenceService(ServeSettings(run_dir={str(exports["ranker"])!r}, reload_interval_s=0))
with TestClient(create_app(service)) as api:
    assert api.post("/rank", json={{"candidates": [{{"post_id": 1}}]}}).status_code == 200
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_serve_ends_its_start_up_with_the_models_and_the_url(exports: dict[str, Path]) -> None:
    """Uvicorn at ``info`` (its own start-up lines), port 0: the last lines printed while it
    serves are the headline, with the port actually bound."""
    code = (
        "from serving.inference.cli import main; "
        f"main(['serve.run_dir={exports['ranker']}', 'serve.port=0', 'serve.log_level=info'])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "serving on http://" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert any("Uvicorn running on" in line for line in lines), lines
    loaded, url = lines[-2:]
    assert loaded.startswith("recsys serve: models loaded: ranker ") and "export" in loaded
    port = int(url.split("http://127.0.0.1:")[1].split()[0])
    assert port > 0, url
