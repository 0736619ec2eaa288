"""``recsys explore explore.ranker_run=DIR explore.retrieval_run=DIR [explore.user=ID]``.

A multi-task ranker run and a two-tower run on the same synthetic data -> the Explore funnel
(:mod:`recsys.ranking.social_explore`) at the start of the ranker's held-out (test) period, its
pages, and with ``explore.evaluate`` the offline value against retrieval order and ranking
without diversity (:func:`recsys.ranking.evaluate.evaluate_funnel`). Writes ``explore.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.config.commands import ExploreRequest, explore_request
from recsys.config.schema import ConfigError
from recsys.data.prepared import load_prepared
from recsys.data.synthetic import SocialSource
from recsys.ranking.evaluate import evaluate_funnel, social_truth
from recsys.ranking.social_explore import (
    build_social_funnel,
    evaluation_lines,
    held_out_users,
    page_lines,
    rows_by_id,
    social_app,
    temporal_boundary,
)
from recsys.retrieval.index import VectorIndex
from recsys.train.retrieval_run import reopen_two_tower

__all__ = ["explore_run"]


def _retrieval_index(
    req: ExploreRequest, ids: np.ndarray, vecs: np.ndarray
) -> tuple[VectorIndex, str]:
    """The saved ``RUN/indexes/<kind>`` when it holds these items, else one built now."""
    saved = req.retrieval_dir / "indexes" / req.index_kind
    if (saved / "config.json").is_file():
        index = VectorIndex.load(saved)
        if np.array_equal(np.sort(index.ids), np.sort(ids)):
            return index, str(saved)
    return VectorIndex.build(vecs, ids, req.index_config), "built in memory"


def explore_run(cfg: Any, out_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Writes ``out_dir/explore.json``; returns it and the printed lines (the file last)."""
    req = explore_request(cfg)
    settings = req.settings

    # The ranker: model, fitted preprocessor, and the app at the start of its test period.
    metrics = json.loads((req.ranker_dir / "metrics.json").read_text())
    dataset = load_prepared(Path(metrics["data"]["path"]))
    model = req.ranker_model(dataset.spec)
    model.load_state_dict(torch.load(req.ranker_dir / "model.pt", map_location="cpu"))
    model.eval()
    source = req.ranker_source()
    if not isinstance(source, SocialSource):
        raise ConfigError("explore.ranker_run: the run's data source is not the synthetic app")
    impressions = pl.concat(list(source.iter_chunks()))
    now = temporal_boundary(impressions, req.split_fractions)
    app = social_app(source.config, impressions, now, world=source.world)

    # Retrieval: item vectors by post id, user vectors with their history before `now`.
    run = reopen_two_tower(req.retrieval, req.retrieval_dir / "model.pt", req.retrieval_seed)
    ids, vecs = run.item_vectors()
    item_by_post, _ = rows_by_id(ids, vecs, len(app.catalog))
    user_ids, user_vecs = run.user_vectors_at(now)
    user_by_id, known = rows_by_id(user_ids, user_vecs, app.n_users)
    index, index_from = _retrieval_index(req, ids, vecs)
    funnel = build_social_funnel(
        app, model, dataset.preprocessor(), index, item_by_post, user_by_id, known, settings
    )

    if req.user is not None:
        user = req.user
        if not 0 <= user < app.n_users:
            raise ConfigError(
                f"explore.user={user} is not a user of the synthetic app (0..{app.n_users - 1})"
            )
        if not known[user] and not settings.cold_start:
            raise ConfigError(
                f"explore.user={user} has no two-tower vector (no interaction in the retrieval "
                "run's data); pick another user or set explore.cold_start=true"
            )
        users = [user]
    else:
        users = held_out_users(app, req.n_users, known)
    pages = [funnel.recommend(u, now) for u in users]
    lines: list[str] = []
    for page in pages:
        lines += page_lines(page, funnel.ranker.tasks)
    result: dict[str, Any] = {
        "ranker_run": str(req.ranker_dir),
        "retrieval_run": str(req.retrieval_dir),
        "now": now,
        "index": {"kind": index.kind, "from": index_from},
        "settings": {
            "sizes": req.report_settings["sizes"],
            "quotas": funnel.quotas,
            "value": settings.value.to_dict(),
            "diversity": req.report_settings["diversity"],
        },
        "pages": [p.to_dict() for p in pages],
    }
    if req.evaluate:
        eval_users = held_out_users(app, req.eval_users, known)
        ev = evaluate_funnel(funnel, eval_users, now, social_truth(app.world))
        result["evaluation"] = ev.to_dict()
        lines += evaluation_lines(ev)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "explore.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    lines.append(f"explore: {path}")
    return result, lines
