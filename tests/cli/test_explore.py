"""``recsys index build`` and ``recsys explore`` on tiny two-tower and ranker runs trained once
on the same synthetic data: saved indexes round trip, the page respects its rules, the offline
evaluation reports the three methods, and bad inputs fail with a message naming the problem."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from recsys.retrieval.index import VectorIndex
from tests.recsys_command import SOCIAL_600, run_recsys

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"

DATA = [*SOCIAL_600, "tracking.enabled=false"]
run = run_recsys


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny two-tower run and a tiny multi-task ranker run on the same data."""
    base = tmp_path_factory.mktemp("explore")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_DATA_ROOT", str(base / "data_root"))
    mp.setenv("RECSYS_OUTPUT_ROOT", str(base / "outputs"))
    out = {"retrieval": base / "tt", "ranker": base / "mt", "base": base}
    run(
        [
            "train",
            "experiment=two_tower_social_tiny",
            *DATA,
            "trainer.max_epochs=2",
            "retrieval.baselines.als.iterations=1",
            "retrieval/indexes=flat",
            f"hydra.run.dir={out['retrieval']}",
        ]
    )
    run(["train", "experiment=multitask_social_tiny", *DATA, f"hydra.run.dir={out['ranker']}"])
    yield out
    mp.undo()


@pytest.fixture(autouse=True)
def _roots(runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(runs["base"] / "data_root"))
    monkeypatch.setenv("RECSYS_OUTPUT_ROOT", str(runs["base"] / "outputs"))


def explore_args(runs: dict[str, Path], tmp_path: Path, *extra: str) -> list[str]:
    return [
        "explore",
        f"explore.ranker_run={runs['ranker']}",
        f"explore.retrieval_run={runs['retrieval']}",
        f"hydra.run.dir={tmp_path / 'explore'}",
        *extra,
    ]


def test_index_build_saves_and_round_trips(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = runs["retrieval"]
    run(["index", "build", f"index.run_dir={run_dir}", "index.kind=[flat,hnsw]"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"index: {run_dir / 'indexes' / 'hnsw'}"
    assert out[-2] == f"index: {run_dir / 'indexes' / 'flat'}"
    line = next(s for s in out if s.startswith("index hnsw:"))
    assert "recall@10 vs exact" in line and "qps" in line and "MiB" in line
    report = json.loads((run_dir / "indexes" / "report.json").read_text())
    assert set(report["indexes"]) == {"flat", "hnsw"}
    assert report["indexes"]["flat"]["recall_at_k"] == pytest.approx(1.0)
    for kind in ("flat", "hnsw"):
        assert (run_dir / "indexes" / kind / "index.faiss").is_file()
    flat = VectorIndex.load(run_dir / "indexes" / "flat")
    hnsw = VectorIndex.load(run_dir / "indexes" / "hnsw")
    assert np.array_equal(np.sort(flat.ids), np.sort(hnsw.ids)) and flat.ids.min() >= 0
    queries = np.asarray(flat.faiss_index.reconstruct_n(0, 16))
    before = hnsw.search(queries, 10)
    hnsw.save(run_dir / "indexes" / "copy")
    after = VectorIndex.load(run_dir / "indexes" / "copy").search(queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])


def test_explore_page_rules_latency_and_gains(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        explore_args(
            runs,
            tmp_path,
            "explore.n_users=2",
            "explore.evaluate=true",
            "explore.eval_users=8",
            "explore.sizes={retrieve: 600, rank: 150, page: 12}",
            "explore.quotas={ann: 300, item2item: 200, popular: 100}",
        )
    )
    out = capsys.readouterr().out.strip().splitlines()
    path = tmp_path / "explore" / "explore.json"
    assert out[-1] == f"explore: {path}"
    assert any(s.startswith("latency ms: retrieve") for s in out)
    assert any(s.startswith("gain funnel vs retrieval") for s in out)
    result = json.loads(path.read_text())
    assert len(result["pages"]) == 2
    for page in result["pages"]:
        items = page["items"]
        assert 0 < len(items) <= 12
        assert set(page["latency_ms"]) == {"retrieve", "rank", "rerank", "total"}
        assert all(v >= 0 for v in page["latency_ms"].values())
        relaxed = {
            r["position"]
            for r in page["diversity"]["relaxed"]
            if "no_consecutive_author" in r["rules"]
        }
        for pos, (a, b) in enumerate(itertools.pairwise(items), start=1):
            assert a["author"] != b["author"] or pos in relaxed
        for it in items:
            assert set(it["probs"]) == {"like", "comment", "share", "save", "long_dwell"}
            assert it["source"] in it["sources"]
    ev = result["evaluation"]
    assert ev["n_requests"] == 8
    assert set(ev["value"]) == {"retrieval", "ranked", "funnel"}
    assert all(v > 0 for v in ev["value"].values())
    assert {"gain_funnel_vs_retrieval", "gain_ranked_vs_retrieval"} <= set(ev)
    assert result["index"]["kind"] == "hnsw"


def test_explore_one_user(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The most active held-out user (the default pick), then asked for by id.
    run(explore_args(runs, tmp_path, "explore.n_users=1", "explore.index=flat"))
    first = json.loads((tmp_path / "explore" / "explore.json").read_text())["pages"][0]["user"]
    capsys.readouterr()
    run(explore_args(runs, tmp_path / "b", f"explore.user={first}", "explore.index=flat"))
    page = json.loads((tmp_path / "b" / "explore" / "explore.json").read_text())["pages"]
    assert [p["user"] for p in page] == [first] and len(page[0]["items"]) == 20


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        run(args)
    return capsys.readouterr().err


def test_bad_inputs_name_the_problem(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    err = _fails(["index", "build", f"index.run_dir={missing}"], capsys)
    assert "does not exist" in err and str(missing) in err
    err = _fails(["index", "build", f"index.run_dir={runs['ranker']}"], capsys)
    assert "ranking run" in err and "two_tower_social" in err
    err = _fails(["explore", f"hydra.run.dir={tmp_path / 'x'}"], capsys)
    assert "multitask_social" in err and "two_tower_social" in err
    swapped = [
        "explore",
        f"explore.ranker_run={runs['retrieval']}",
        f"explore.retrieval_run={runs['ranker']}",
        f"hydra.run.dir={tmp_path / 'y'}",
    ]
    assert "retrieval run" in _fails(swapped, capsys)
    err = _fails(explore_args(runs, tmp_path, "explore.user=999999"), capsys)
    assert "explore.user=999999" in err and "not a user" in err
    assert not (tmp_path / "explore" / "explore.json").exists()


def test_explore_refuses_runs_on_different_data(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "mt_other"
    other.mkdir()
    for name in ("model.pt", "metrics.json", "feature_spec.json"):
        (other / name).write_bytes((runs["ranker"] / name).read_bytes())
    text = (runs["ranker"] / "config.resolved.yaml").read_text()
    assert "n_posts: 1500" in text
    (other / "config.resolved.yaml").write_text(text.replace("n_posts: 1500", "n_posts: 1400"))
    args = explore_args(runs, tmp_path, f"explore.ranker_run={other}")
    err = _fails(args, capsys)
    assert "different data" in err and "n_posts" in err


def _as_legacy(run_dir: Path, name: str, dest: Path, runs: dict[str, Path]) -> Path:
    """A copy of ``run_dir`` whose config.resolved.yaml is the old-format one of ``name``,
    with this module's data settings (so the rebuilt data matches the trained model)."""
    import shutil

    import yaml

    shutil.copytree(run_dir, dest)
    cfg = yaml.safe_load(
        (LEGACY / f"{name}.yaml")
        .read_text()
        .replace("@DATA_ROOT@", str(runs["base"] / "data_root"))
        .replace("@OUTPUT_ROOT@", str(runs["base"] / "outputs"))
    )
    for item in DATA:
        key, value = item.split("=")
        if key.startswith("data.source.config."):
            cfg["data"]["source"]["config"][key.rsplit(".", 1)[1]] = int(value)
    (dest / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    return dest


def test_explore_opens_runs_written_before_the_config_groups(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {
        "ranker": _as_legacy(runs["ranker"], "multitask_social_tiny", tmp_path / "mt", runs),
        "retrieval": _as_legacy(runs["retrieval"], "two_tower_social_tiny", tmp_path / "tt", runs),
    }
    run(explore_args(old, tmp_path, "explore.n_users=1", "explore.index=flat"))
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("explore: ")
