"""``recsys export`` on tiny finished runs: the folder, the manifest, parity over the test split,
the MLflow record and registry, and the errors a served export must give at load time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from recsys.export.manifest import FORMAT_VERSION, MANIFEST, ManifestError, load_manifest
from recsys.retrieval.index import VectorIndex
from tests.recsys_command import SOCIAL_600, run_recsys

DATA = SOCIAL_600
run = run_recsys


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tracked tiny multi-task ranker run and a tracked tiny two-tower run, both exported."""
    base = tmp_path_factory.mktemp("export")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_DATA_ROOT", str(base / "data_root"))
    mp.setenv("RECSYS_OUTPUT_ROOT", str(base / "outputs"))
    out = {"ranker": base / "mt", "retrieval": base / "tt", "base": base}
    run(["train", "experiment=multitask_social_tiny", *DATA, f"hydra.run.dir={out['ranker']}"])
    run(
        [
            "train",
            "experiment=two_tower_social_tiny",
            *DATA,
            "trainer.max_epochs=1",
            "retrieval.baselines.als.iterations=1",
            "retrieval/indexes=flat",
            f"hydra.run.dir={out['retrieval']}",
        ]
    )
    for name in ("ranker", "retrieval"):
        run(["export", f"export.run_dir={out[name]}"])
    yield out
    mp.undo()


def test_ranker_export_folder_and_manifest(runs: dict[str, Path]) -> None:
    export = runs["ranker"] / "export"
    manifest = load_manifest(export)
    assert manifest.kind == "ranker" and manifest.model["class"] == "MultiTaskRanker"
    tasks = ["like", "comment", "share", "save", "long_dwell"]
    model = manifest.models["ranker"]
    assert [t.name for t in model.outputs] == tasks
    assert model.inputs[0].name == "dense" and model.inputs[0].shape == ("batch", 4)
    assert model.sparse_features() == [f["name"] for f in manifest.feature_spec["sparse"]]
    for t in model.inputs[1:]:
        assert t.dtype == ("int64" if t.name.endswith(".ids") else "int32")
    parity = manifest.parity["ranker"]
    assert parity["split"] == "test" and parity["rows"] == 3000
    assert parity["worst"] <= 1e-5 and parity["ok"]
    pre = manifest.preprocessing
    assert set(pre["dense"]) == set(manifest.feature_spec["dense"])
    assert pre["id_convention"] == {"missing": 0, "oov": 1, "first_vocab": 2}
    for name, entry in pre["categorical"].items():
        assert entry["kind"] == "vocab" and (export / entry["file"]).is_file(), name
    metrics = json.loads((runs["ranker"] / "metrics.json").read_text())
    assert manifest.run["run_id"] == metrics["run_id"]
    assert manifest.run["metrics"]["like"]["auc"] == metrics["test"]["like"]["auc"]
    assert len(manifest.run["config_hash"]) == 64


def test_two_tower_export_folder(runs: dict[str, Path]) -> None:
    export = runs["retrieval"] / "export"
    manifest = load_manifest(export)
    assert manifest.kind == "two_tower" and set(manifest.models) == {"user_tower", "item_tower"}
    for name in ("user_tower", "item_tower"):
        assert manifest.parity[name]["worst"] <= 1e-5
    vectors = np.load(export / "item_vectors.npy")
    items = pq.read_table(export / "retrieval" / "items.parquet").to_pydict()
    users = pq.read_table(export / "retrieval" / "users.parquet").to_pydict()
    assert vectors.shape == (manifest.retrieval["num_items"], manifest.retrieval["index"]["dim"])
    assert items["index"] == list(range(len(vectors)))
    assert len(users["id"]) == manifest.retrieval["num_users"]
    assert max(len(h) for h in users["history"]) <= manifest.preprocessing["history_len"]
    assert manifest.retrieval["index"]["kind"] == "flat"  # the run's only configured index
    index = VectorIndex.load(export / "index")
    _, got = index.search(vectors[:5], 1)
    assert got[:, 0].tolist() == [0, 1, 2, 3, 4]  # an item's nearest vector is itself
    for feature, rel in manifest.preprocessing["vocab"].items():
        vocab = pq.read_table(export / rel).to_pydict()
        assert vocab["code"] == list(range(1, len(vocab["value"]) + 1)), feature


def test_mlflow_record_has_the_export_and_registered_models(runs: dict[str, Path]) -> None:
    for name, expected in (
        ("ranker", ["recsys-multitask_social_tiny"]),
        (
            "retrieval",
            ["recsys-two_tower_social_tiny-item_tower", "recsys-two_tower_social_tiny-user_tower"],
        ),
    ):
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        client = MlflowClient(tracking_uri=metrics["tracking_uri"])
        artifacts = {a.path for a in client.list_artifacts(metrics["run_id"], "export")}
        assert "export/manifest.json" in artifacts
        for model_name in expected:
            versions = client.search_model_versions(f"name='{model_name}'")
            assert versions and versions[0].run_id == metrics["run_id"]


def test_a_changed_model_file_or_format_refuses_to_load(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(runs["ranker"] / "export", export)
    with open(export / "ranker.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="changed after export"):
        load_manifest(export)
    shutil.copy(runs["ranker"] / "export" / "ranker.onnx", export / "ranker.onnx")
    data = json.loads((export / MANIFEST).read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (export / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="format version"):
        load_manifest(export)
    data["format_version"] = FORMAT_VERSION
    data["feature_spec"]["sparse"] = data["feature_spec"]["sparse"][1:]
    (export / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="sparse features"):
        load_manifest(export)
    (export / MANIFEST).unlink()
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        load_manifest(export)


def test_export_errors_name_the_key(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*args: str) -> str:
        with pytest.raises(SystemExit):
            run(["export", *args])
        return capsys.readouterr().err

    assert "export.run_dir is required" in fails()
    assert "does not exist" in fails(f"export.run_dir={tmp_path / 'nope'}")
    ranker = f"export.run_dir={runs['ranker']}"
    assert "export.index is for two-tower runs" in fails(ranker, "export.index=hnsw")
    assert "export.tolerance must be > 0" in fails(ranker, "export.tolerance=0")
    assert "unknown config key 'export.parity'" in fails(ranker, "+export.parity=1")
    assert load_manifest(runs["ranker"] / "export").kind == "ranker"  # left as it was


def test_export_prints_parity_and_the_folder_last(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "again"
    run(
        [
            "export",
            f"export.run_dir={runs['ranker']}",
            f"export.out_dir={out}",
            "export.register=false",
            "export.parity_rows=500",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"export: {out}"
    parity = next(line for line in lines if line.startswith("parity:"))
    assert "over 500 test rows" in parity
    assert load_manifest(out).parity["ranker"]["rows"] == 500
