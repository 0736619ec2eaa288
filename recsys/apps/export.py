"""``recsys export export.run_dir=RUN``: a finished run -> ``RUN/export/`` for serving.

A ranker run gives ``ranker.onnx`` + its preprocessing; a two-tower run gives both towers,
the item vectors and their FAISS index (:mod:`recsys.export`). Parity against PyTorch eager is
checked and printed; the files and the ONNX models (MLflow's model format, registered) are
added to the run's MLflow record when the run was tracked.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from recsys.config.export import export_request
from recsys.export.folder import run_facts
from recsys.export.ranker import export_ranker_run
from recsys.export.two_tower import export_two_tower_run
from recsys.train.retrieval_run import reopen_two_tower
from recsys.train.tracking import log_export

__all__ = ["export_run"]


def export_run(cfg: Any) -> tuple[dict[str, Any], list[str]]:
    """``(summary, printed lines)``; the export folder comes last."""
    req = export_request(cfg)
    run = run_facts(req.run_dir, req.name)
    lines: list[str] = []
    if req.task == "retrieval":
        assert req.retrieval is not None and req.index is not None
        opened = reopen_two_tower(req.retrieval, req.run_dir / "model.pt", req.seed)
        now = int(opened.frame[req.retrieval.interactions.timestamp].max()) + 1
        users = opened.data.user_table_at(opened.frame, now)
        separator = next(iter(req.separators.values()), None)
        manifest, facts = export_two_tower_run(
            opened.model,
            opened.data,
            users,
            req.index,
            req.out_dir,
            run=run,
            separator=separator,
            tolerance=req.settings.tolerance,
        )
        for name, report in facts.parity.items():
            lines.append(
                f"parity {name}: max |onnxruntime - torch| {report.worst:.2e} over "
                f"{report.rows} {report.split} rows (tolerance {report.tolerance:g})"
            )
        lines.append(f"index {facts.index['kind']}: {facts.items} items, dim {facts.index['dim']}")
    else:
        assert req.dataset is not None and req.model is not None
        dataset = req.dataset()
        model = req.model(dataset.spec)
        model.load_state_dict(torch.load(req.run_dir / "model.pt", map_location="cpu"))
        manifest, parity = export_ranker_run(
            model,
            dataset,
            req.out_dir,
            run=run,
            separators=req.separators,
            settings=req.settings,
        )
        per_task = "  ".join(f"{t} {d:.1e}" for t, d in parity.max_abs_diff.items())
        lines.append(
            f"parity: max |onnxruntime - torch| {parity.worst:.2e} on probabilities over "
            f"{parity.rows} {parity.split} rows (tolerance {parity.tolerance:g}): {per_task}"
        )
    summary: dict[str, Any] = {
        "out_dir": req.out_dir,
        "manifest": manifest.to_dict(),
        "mlflow": None,
    }
    metrics = json.loads((req.run_dir / "metrics.json").read_text())
    if req.register and metrics.get("run_id") and metrics.get("tracking_uri"):
        files = {name: req.out_dir / m.file for name, m in manifest.models.items()}
        summary["mlflow"] = log_export(
            metrics["tracking_uri"],
            metrics["run_id"],
            req.out_dir,
            files,
            req.registered_name,
        )
        registered = ", ".join(summary["mlflow"]["registered"].values()) or "none"
        lines.append(f"mlflow: run {metrics['run_id']} artifacts export/, registered {registered}")
    else:
        lines.append("mlflow: the run was not tracked (or export.register=false); nothing logged")
    kinds = ", ".join(f"{n} ({m.file})" for n, m in manifest.models.items())
    lines.append(f"{req.name}: exported {manifest.kind} {kinds}")
    lines.append(f"export: {req.out_dir}")
    return summary, lines
