"""The export folder's life cycle and the facts every manifest records about its run.

:func:`fresh_export_dir` removes the manifest first (so a half-written export never looks
complete) and then the files an export owns; other files in the folder are left alone.
:func:`run_facts` gathers the training run's identity: its MLflow run id and test metrics
from ``metrics.json``, the sha256 of ``config.resolved.yaml`` and the git commit of the code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from recsys.export.manifest import MANIFEST

__all__ = ["OWNED", "ParityError", "fresh_export_dir", "git_commit", "run_facts"]

#: Files and folders an export writes (and removes before writing again).
OWNED = (
    "ranker.onnx",
    "user_tower.onnx",
    "item_tower.onnx",
    "item_vectors.npy",
    "preprocess",
    "retrieval",
    "index",
)


class ParityError(RuntimeError):
    """The exported model does not reproduce the trained one within the tolerance."""


def fresh_export_dir(export_dir: Path) -> Path:
    """Creates ``export_dir`` and removes a previous export's manifest, then its files."""
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST, MANIFEST + ".tmp"):
        (export_dir / name).unlink(missing_ok=True)
    for name in OWNED:
        path = export_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return export_dir


def git_commit(start: Path) -> str | None:
    """The commit checked out where ``start`` lies (``None`` outside a git work tree)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_facts(run_dir: Path, experiment: str) -> dict[str, Any]:
    """``run_dir``, ``run_id``, ``experiment``, test ``metrics``, ``git_commit``,
    ``config_hash`` of a finished run folder."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    config = run_dir / "config.resolved.yaml"
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None
    return {
        "run_dir": str(run_dir.resolve()),
        "run_id": metrics.get("run_id"),
        "experiment": experiment,
        "metrics": metrics.get("test", {}),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "config_hash": digest,
    }
