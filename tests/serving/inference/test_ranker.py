"""OnnxRanker on real exports: probabilities equal the eager model's on the same raw rows
(through the training pipeline) within 1e-5, pre-built inputs are validated, a model that does
not match its manifest refuses to start, and the backend's ranking-client protocol works."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.data.prepared import PreparedDataset
from recsys.export.manifest import ManifestError
from recsys.ranking.value import DEFAULT_WEIGHTS, ValueFormula
from serving.inference.errors import RequestError
from serving.inference.ranker import OnnxRanker, RankerSettings
from serving.inference.session import CPU, CUDA, SessionSettings, providers_for
from serving.social.ranking import Candidate, RankingClient, Viewer
from tests.serving.inference.conftest import perturb, raw_rows, training_feeds
from tests.serving.inference.exports import eager_probabilities

TOLERANCE = 1e-5


def _max_diff(got: dict[str, np.ndarray], eager: np.ndarray) -> float:
    assert all(p.dtype == np.float32 and p.shape == (eager.shape[0],) for p in got.values())
    return max(float(np.abs(p - eager[:, j]).max()) for j, p in enumerate(got.values()))


def _check_against_eager(
    ranker: OnnxRanker, model: Any, ds: PreparedDataset, rows: list, tmp: Path, seps=None
) -> None:
    pre = ds.preprocessor()
    for batch in (rows, rows[:1], rows[1:2]):
        eager = eager_probabilities(model, ds.spec, training_feeds(pre, batch, tmp, seps))
        got = ranker.score(batch)
        assert list(got) == list(ds.spec.labels)
        assert _max_diff(got, eager) <= TOLERANCE


def test_social_ranker_matches_eager_torch(
    social: PreparedDataset, social_ranker: tuple[Path, Any], tmp_path: Path
) -> None:
    export_dir, model = social_ranker
    ranker = OnnxRanker.load(export_dir)
    assert ranker.tasks == tuple(social.spec.labels) and ranker.providers == (CPU,)
    rows = perturb(raw_rows(social, 300, 11), social.preprocessor(), 12, int_features=["user_id"])
    _check_against_eager(ranker, model, social, rows, tmp_path)


def test_ctr_ranker_matches_eager_with_empty_lists_and_separator_strings(
    ctr: tuple[PreparedDataset, dict[str, str]], ctr_ranker: tuple[Path, Any], tmp_path: Path
) -> None:
    ds, seps = ctr
    export_dir, model = ctr_ranker
    ranker = OnnxRanker.load(export_dir)
    rows = perturb(raw_rows(ds, 200, 13), ds.preprocessor(), 14, int_features=["ad"])
    rows[0].update(tags=[], cats=None)  # a batch of 1 with empty bags
    rows[1].update(tags="", cats="|")
    rows[2].update(tags="t1|t2||t3", cats=["c1", None, "c9"])
    _check_against_eager(ranker, model, ds, rows, tmp_path, seps)
    feeds = ranker.preprocessor.transform(rows[:1])
    assert feeds["tags.lengths"].tolist() == [0] and feeds["cats.ids"].size == 0
    assert ranker.value_formula.signed() == {"click": 1.0}


def test_score_feeds_equals_score_and_accepts_lists(social_ranker: tuple[Path, Any]) -> None:
    ranker = OnnxRanker.load(social_ranker[0])
    rows = [{"user_id": 3, "topic": "travel", "post_age_hours": 2.0}, {"media_type": "video"}]
    feeds = ranker.preprocessor.transform(rows)
    expected = ranker.score(rows)
    for given in (feeds, {k: v.tolist() for k, v in feeds.items()}):
        got = ranker.score_feeds(given)
        assert all(np.array_equal(got[t], expected[t]) for t in ranker.tasks)


def _set(name: str, value: Callable[[dict], Any]) -> Callable[[dict], None]:
    return lambda feeds: feeds.__setitem__(name, value(feeds))


BAD_FEEDS = [
    (lambda f: f.pop("tags.ids"), "tags.ids", "missing input"),
    (_set("colour", lambda f: f["dense"]), "colour", "unknown input"),
    (_set("dense", lambda f: f["dense"].astype(np.float64)), "dense", "dtype float64"),
    (_set("dense", lambda f: np.zeros((2, 3), np.float32)), "dense", "shape"),
    (_set("dense", lambda f: f["dense"][:, :, None]), "dense", "dimensions"),
    (_set("dense", lambda f: f["dense"][:0]), "dense", "is empty"),
    (_set("user.ids", lambda f: f["user.ids"] + 10_000), "user.ids", "outside"),
    (_set("user.ids", lambda f: -f["user.ids"] - 1), "user.ids", "outside"),
    (_set("user.lengths", lambda f: f["user.lengths"] * 2), "user.lengths", "exactly 1 id"),
    (_set("tags.lengths", lambda f: f["tags.lengths"] + 1), "tags.lengths", "sum to"),
    (_set("tags.lengths", lambda f: f["tags.lengths"][:1]), "tags.lengths", "rows"),
    (_set("ad.ids", lambda f: [0.5] * 2), "ad.ids", "values of kind float64"),
]


@pytest.mark.parametrize(("mutate", "field", "text"), BAD_FEEDS)
def test_bad_prebuilt_inputs_name_the_input(
    ctr_ranker: tuple[Path, Any], mutate: Callable[[dict], Any], field: str, text: str
) -> None:
    ranker = OnnxRanker.load(ctr_ranker[0])
    feeds = ranker.preprocessor.transform([{"tags": ["t1"], "user": "u1"}, {"tags": "t2|t3"}])
    mutate(feeds)
    with pytest.raises(RequestError, match=text) as info:
        ranker.score_feeds(feeds)
    assert info.value.field == field and repr(field) in str(info.value)


def _copy(export_dir: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(export_dir, tmp / "copy"))


def _edit_manifest(export_dir: Path, edit: Callable[[dict], None]) -> None:
    path = export_dir / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_changed_or_mismatched_model_refuses_to_start(
    social_ranker: tuple[Path, Any], ctr_ranker: tuple[Path, Any], tmp_path: Path
) -> None:
    export_dir = _copy(social_ranker[0], tmp_path)
    onnx = export_dir / "ranker.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ManifestError, match="sha256"):
        OnnxRanker.load(export_dir)
    shutil.copy(ctr_ranker[0] / "ranker.onnx", onnx)  # another model, hash updated
    sha = json.loads((ctr_ranker[0] / "manifest.json").read_text())["models"]["ranker"]["sha256"]
    _edit_manifest(export_dir, lambda d: d["models"]["ranker"].__setitem__("sha256", sha))
    with pytest.raises(ManifestError, match="the model's inputs are"):
        OnnxRanker.load(export_dir)
    onnx.write_bytes(original)
    digest = json.loads((social_ranker[0] / "manifest.json").read_text())["models"]["ranker"]
    _edit_manifest(export_dir, lambda d: d["models"].__setitem__("ranker", digest))
    OnnxRanker.load(export_dir)  # restored

    def wrong_dtype(d: dict) -> None:
        d["models"]["ranker"]["inputs"][0]["dtype"] = "int64"

    _edit_manifest(export_dir, wrong_dtype)
    with pytest.raises(ManifestError, match="'dense' is tensor\\(float\\) in the model"):
        OnnxRanker.load(export_dir)
    _edit_manifest(export_dir, lambda d: d["models"].__setitem__("ranker", digest))

    def wrong_rank(d: dict) -> None:
        d["models"]["ranker"]["outputs"][0]["shape"] = ["batch", 1]

    _edit_manifest(export_dir, wrong_rank)
    with pytest.raises(ManifestError, match="has rank 1 in the model, 2 in the manifest"):
        OnnxRanker.load(export_dir)
    _edit_manifest(export_dir, lambda d: d.__setitem__("format_version", 99))
    with pytest.raises(ManifestError, match="format version 99"):
        OnnxRanker.load(export_dir)


def test_ranking_client_protocol(social_ranker: tuple[Path, Any]) -> None:
    ranker = OnnxRanker.load(social_ranker[0])
    assert ranker.value_formula.signed() == DEFAULT_WEIGHTS
    candidates = [
        Candidate(12, 3, "travel", "image", 1.5, 4.8, 42.0, 1),
        Candidate(40, 7, "food", "video", 30.0, 1.8, 0.0, 0),
        Candidate(99999, 8, "unknown-topic", None, 0.1, 0.0, 7.0, 0),
    ]
    viewer = Viewer(7, "fr", None, 2.4)
    scores = ranker.scores(viewer, candidates)
    raw = set(ranker.raw_features)
    rows = [
        {
            **{k: v for k, v in dataclasses.asdict(c).items() if k in raw},
            **dataclasses.asdict(viewer),
        }
        for c in candidates
    ]
    assert scores == ranker.values(ranker.score(rows)).tolist()
    assert len(set(scores)) == 3
    absent = ranker.preprocessor.counters.snapshot()["absent"]
    assert absent["user_activity"] == 3 + 3 and "country" not in absent  # both calls counted
    client = RankingClient(ranker, timeout_ms=10_000)
    order, name = client.order(viewer, candidates)
    client.close()
    assert name == "onnx" and client.fallbacks == 0
    assert order == [candidates[i].post_id for i in np.argsort(-np.array(scores), kind="stable")]
    with pytest.raises(RequestError, match="is empty") as info:
        ranker.scores(viewer, [])
    assert info.value.field == "candidates"


def test_value_formula_and_session_settings(social_ranker: tuple[Path, Any]) -> None:
    export_dir = social_ranker[0]
    with pytest.raises(ValueError, match="needs task 'click'"):
        OnnxRanker.load(export_dir, RankerSettings(value=ValueFormula(weights={"click": 1.0})))
    formula = ValueFormula(weights={"like": 1.0}, penalties={"share": 0.5})
    settings = RankerSettings(
        session=SessionSettings(2, 2, "parallel", "basic", "cpu"), value=formula
    )
    tuned, plain = OnnxRanker.load(export_dir, settings), OnnxRanker.load(export_dir)
    rows = [{"user_id": "5", "topic": "travel"}, {"post_age_hours": 3.0}]
    a, b = tuned.score(rows), plain.score(rows)
    assert all(np.abs(a[t] - b[t]).max() <= 1e-6 for t in plain.tasks)
    assert np.allclose(tuned.values(a), a["like"] - 0.5 * a["share"])
    assert providers_for("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert providers_for("cpu", [CUDA, CPU]) == [CPU]
    assert providers_for("auto", [CPU]) == [CPU]
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        providers_for("cuda", [CPU])
    with pytest.raises(ValueError, match="thread counts"):
        SessionSettings(intra_op_num_threads=-1)
