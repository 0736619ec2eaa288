"""Request-time code loads neither torch nor the training stack: a fresh interpreter imports
every serving.inference module, preprocesses and scores rows through ONNX Runtime, retrieves
through FAISS, and has loaded only the torch-free modules of recsys (the export manifest, the
value formula, the feature store's names and its Redis and SQLite layouts) and no Feast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
ALLOWED = {
    "recsys",
    "recsys.export",
    "recsys.export.manifest",
    "recsys.ranking",
    "recsys.ranking.value",
    "recsys.features",
    "recsys.features.schema",
    "recsys.features.layout",
    "recsys.features.redis_layout",
    "recsys.features.sqlite_layout",
}

CODE = """
import json, sys
from pathlib import Path
import serving.inference.columns, serving.inference.errors, serving.inference.hashing
import serving.inference.preprocess, serving.inference.session
import serving.inference.retrieval_inputs, serving.inference.features
from serving.inference.ranker import OnnxRanker
from serving.inference.retriever import FaissRetriever, Recommender
ranker = OnnxRanker.load(Path(sys.argv[1]))
probs = ranker.score([{"user_id": 3, "topic": "travel", "post_age_hours": 1.5}])
assert probs["like"].shape == (1,), probs
retriever = FaissRetriever.load(Path(sys.argv[2]))
ids, scores = retriever.retrieve({"user_id": retriever.inputs.user_ids[0]}, 3)
page = Recommender(retriever, ranker, item_feature="post_id").recommend(
    {"user_id": retriever.inputs.user_ids[0]}, k=5, n=2)
assert len(ids) == 3 and len(page.item_ids) == 2
heavy = sorted(
    m for m in sys.modules if m.split(".")[0] in ("torch", "torchrec", "fbgemm_gpu", "feast"))
print(json.dumps({"heavy": heavy,
                  "recsys": sorted(m for m in sys.modules if m.split(".")[0] == "recsys")}))
"""


def test_serving_inference_runs_without_torch(
    social_ranker: tuple[Path, Any], two_tower: tuple
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CODE, str(social_ranker[0]), str(two_tower[0])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded["heavy"] == [], loaded["heavy"]
    assert "torch" not in loaded["heavy"]
    assert set(loaded["recsys"]) <= ALLOWED, set(loaded["recsys"]) - ALLOWED
