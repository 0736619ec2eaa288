"""``recsys evaluate evaluate.run_dir=DIR [evaluate.split=test]``: re-score a finished run.

A ranker run is streamed over the split of its prepared data (AUC, logloss, NE, calibration
per task); a two-tower run is rebuilt from its config and scored over the full corpus
(Recall/NDCG/HitRate@K, MRR; ``valid`` or ``test``). Writes ``RUN/eval-<split>.json``.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from recsys.apps.summaries import retrieval_text, task_metrics_text
from recsys.config.commands import evaluate_request
from recsys.train.evaluation import evaluate
from recsys.train.retrieval_run import reopen_two_tower

__all__ = ["evaluate_run"]


def evaluate_run(cfg: Any) -> tuple[dict[str, Any], list[str]]:
    """``(metrics, printed lines)``; the metrics file comes last."""
    req = evaluate_request(cfg)
    if req.task == "retrieval":
        assert req.retrieval is not None
        run = reopen_two_tower(req.retrieval, req.run_dir / "model.pt", req.seed)
        metrics = dict(run.evaluate(req.split))
        body = retrieval_text(metrics)
    else:
        assert req.dataset is not None and req.model is not None
        dataset = req.dataset()
        model = req.model(dataset.spec)
        model.load_state_dict(torch.load(req.run_dir / "model.pt", map_location="cpu"))
        loader = dataset.loader(req.split, req.eval_batch_size)
        metrics = evaluate(model, loader, dataset.spec.labels, device=torch.device(req.device))
        body = (
            task_metrics_text(metrics)
            if "auc" in metrics
            else f"mean auc {metrics['mean_auc']:.4f}"
        )
    out = req.run_dir / f"eval-{req.split}.json"
    out.write_text(json.dumps(metrics, indent=2))
    return metrics, [f"{req.split}  {body}", f"metrics: {out}"]
