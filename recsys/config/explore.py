"""``recsys index build`` and ``recsys explore`` from their Hydra configs.

Both read finished run folders (``config.resolved.yaml`` + ``model.pt``), rebuild the objects
with the same builders as the runners, and call the library:

* index build: a two-tower run -> item vectors -> one saved
  :class:`~recsys.retrieval.index.VectorIndex` per kind under ``RUN/indexes/<kind>/``
  (:func:`recsys.train.two_tower_run.build_indexes`), with recall@10 against exact search on
  the run's test users;
* explore: a multi-task ranker run and a two-tower run on the same synthetic data -> the Explore
  funnel (:mod:`recsys.ranking.social_explore`) at the start of the ranker's held-out (test)
  period, its pages, and with ``explore.evaluate`` the offline value against retrieval order and
  ranking without diversity (:func:`recsys.ranking.evaluate.evaluate_funnel`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from omegaconf import DictConfig, OmegaConf

from recsys.config.build import _container, build_dataclass, build_source, model_builder
from recsys.config.retrieval import retrieval_plan_from_config
from recsys.config.schema import ConfigError, PathsConfig, validate
from recsys.data.prepared import load_prepared
from recsys.data.synthetic import SocialSource
from recsys.ranking import DiversityRules, StageSizes, ValueFormula
from recsys.ranking.evaluate import evaluate_funnel, social_truth
from recsys.ranking.social_explore import (
    ExploreSettings,
    build_social_funnel,
    evaluation_lines,
    held_out_users,
    page_lines,
    rows_by_id,
    social_app,
    temporal_boundary,
)
from recsys.retrieval.index import IndexConfig, VectorIndex
from recsys.train.two_tower_run import (
    build_indexes,
    item_vectors,
    load_two_tower_run,
    test_user_vectors,
    user_vectors_at,
)

TRAIN_RETRIEVAL = "recsys train experiment=two_tower_social"
TRAIN_RANKER = "recsys train experiment=multitask_social"


@dataclass
class IndexSection:
    """``index.*``: the run folder, the kind(s) to build, extra IndexConfig keys per kind."""

    run_dir: str | None = None
    kind: Any = "hnsw"
    options: dict[str, Any] = field(default_factory=dict)
    k: int = 10


@dataclass
class IndexCommandConfig:
    index: IndexSection = field(default_factory=IndexSection)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class ExploreSection:
    """``explore.*`` (see ``configs/explore.yaml``)."""

    ranker_run: str | None = None
    retrieval_run: str | None = None
    user: int | None = None
    n_users: int = 3
    index: str = "hnsw"
    sizes: dict[str, Any] = field(default_factory=dict)
    quotas: dict[str, Any] | None = None
    value: dict[str, Any] = field(default_factory=dict)
    diversity: dict[str, Any] = field(default_factory=dict)
    popular_window_s: int = 2 * 86_400
    item2item_recent: int = 5
    cold_start: bool = False
    evaluate: bool = False
    eval_users: int = 50


@dataclass
class ExploreCommandConfig:
    explore: ExploreSection = field(default_factory=ExploreSection)
    paths: PathsConfig = field(default_factory=PathsConfig)


def load_run_config(run_dir: str | None, key: str, task: str, command: str) -> DictConfig:
    """The validated resolved config of the finished run at ``run_dir`` (config key ``key``),
    which must be a ``task`` run; errors name the key, the folder and ``command``."""
    if not run_dir:
        raise ConfigError(f"{key} is required: the folder of a finished run of `{command}`")
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{key}: run folder '{path}' does not exist (run `{command}` first)")
    for name in ("config.resolved.yaml", "model.pt"):
        if not (path / name).is_file():
            raise ConfigError(
                f"{key}: '{path}' has no {name}: is it a finished run of `{command}`?"
            )
    cfg = validate(OmegaConf.load(path / "config.resolved.yaml"))
    if cfg.task != task:
        raise ConfigError(
            f"{key}: '{path}' is a {cfg.task} run ({cfg.name}); a {task} run is needed, "
            f"e.g. `{command}`"
        )
    return cfg


def _index_configs(
    run_cfg: DictConfig, kinds: list[str], options: dict[str, Any]
) -> list[IndexConfig]:
    """One IndexConfig per kind: the run's ``retrieval.indexes`` entry of that kind (if any),
    then ``options[kind]`` on top."""
    configured = {i["kind"]: dict(i) for i in (_container(run_cfg.retrieval).get("indexes") or [])}
    out = []
    for kind in kinds:
        values = {**configured.get(kind, {"kind": kind}), **dict(options.get(kind) or {})}
        try:
            out.append(IndexConfig.from_dict(values))
        except ValueError as e:
            raise ConfigError(f"bad index settings for kind {kind!r}: {e}") from None
    return out


def index_build(cfg: DictConfig) -> tuple[dict[str, Any], list[str]]:
    """``recsys index build``: ``(report, printed lines)``; the saved paths come last."""
    cfg = validate(cfg, IndexCommandConfig)
    node = cfg.index
    run_cfg = load_run_config(node.run_dir, "index.run_dir", "retrieval", TRAIN_RETRIEVAL)
    run_dir = Path(node.run_dir)
    kinds = _container(node.kind)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if not kinds:
        raise ConfigError("index.kind must name at least one kind, e.g. index.kind=hnsw")
    unknown = set(_container(node.options) or {}) - set(kinds)
    if unknown:
        raise ConfigError(f"index.options names kinds not built: {sorted(unknown)}")
    configs = _index_configs(run_cfg, kinds, _container(node.options) or {})
    run = load_two_tower_run(retrieval_plan_from_config(run_cfg, run_dir), run_dir / "model.pt")
    ids, vecs = item_vectors(run)
    _, queries = test_user_vectors(run)
    saved = build_indexes(ids, vecs, queries, configs, run_dir / "indexes", k=int(node.k))
    report = {
        "run_dir": str(run_dir),
        "items": len(ids),
        "queries": len(queries),
        "indexes": {s.report.name: s.to_dict() for s in saved},
    }
    (run_dir / "indexes" / "report.json").write_text(json.dumps(report, indent=2, default=float))
    lines = [f"{run_cfg.name}: {len(ids)} item vectors, {len(queries)} test users"]
    for s in saved:
        r = s.report
        lines.append(
            f"index {r.name}: recall@{r.k} vs exact {r.recall_at_k:.3f}  "
            f"build {r.build_seconds:.3f} s  memory {r.memory_bytes / 2**20:.2f} MiB  "
            f"{r.qps:,.0f} qps"
        )
    lines += [f"index: {s.path}" for s in saved]
    return report, lines


def _source_settings(cfg: DictConfig) -> dict[str, Any]:
    """The data source settings that decide the rows (chunking does not)."""
    source = dict(_container(cfg.data.source) or {})
    inner = dict(source.get("config") or {})
    inner.pop("chunk_rows", None)
    source["config"] = inner
    return source


def _check_same_data(ranker: DictConfig, retrieval: DictConfig) -> None:
    a, b = _source_settings(ranker), _source_settings(retrieval)
    if a.get("_target_") != "recsys.data.synthetic.SocialSource":
        raise ConfigError(
            f"explore.ranker_run: the run's data is {a.get('_target_')!r}; explore needs the "
            f"synthetic social app (e.g. `{TRAIN_RANKER}`)"
        )
    if a != b:
        keys = sorted(
            k
            for k in set(a["config"]) | set(b["config"])
            if a["config"].get(k) != b["config"].get(k)
        ) or sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        diff = ", ".join(f"{k}: {a['config'].get(k)} vs {b['config'].get(k)}" for k in keys)
        raise ConfigError(
            "explore.ranker_run and explore.retrieval_run were trained on different data "
            f"(data.source.config differs in {diff}); train both with the same data settings"
        )


def _settings(node: DictConfig) -> ExploreSettings:
    value = dict(_container(node.value) or {})
    quotas = _container(node.quotas)
    try:
        return ExploreSettings(
            sizes=build_dataclass(StageSizes, node.sizes, "explore.sizes"),
            quotas={str(k): int(v) for k, v in quotas.items()} if quotas else None,
            value=build_dataclass(ValueFormula, value, "explore.value"),
            diversity=build_dataclass(DiversityRules, node.diversity, "explore.diversity"),
            popular_window_s=int(node.popular_window_s),
            item2item_recent=int(node.item2item_recent),
            cold_start=bool(node.cold_start),
        )
    except ValueError as e:
        raise ConfigError(f"bad explore settings: {e}") from None


def _retrieval_index(
    run_cfg: DictConfig, run_dir: Path, kind: str, ids: np.ndarray, vecs: np.ndarray
) -> tuple[VectorIndex, str]:
    """The saved ``run_dir/indexes/<kind>`` when it holds these items, else one built now."""
    saved = run_dir / "indexes" / kind
    if (saved / "config.json").is_file():
        index = VectorIndex.load(saved)
        if np.array_equal(np.sort(index.ids), np.sort(ids)):
            return index, str(saved)
    return VectorIndex.build(vecs, ids, _index_configs(run_cfg, [kind], {})[0]), "built in memory"


def explore_run(cfg: DictConfig, out_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """``recsys explore``: writes ``out_dir/explore.json``; returns it and the printed lines."""
    cfg = validate(cfg, ExploreCommandConfig)
    node = cfg.explore
    if not node.ranker_run or not node.retrieval_run:
        raise ConfigError(
            "explore.ranker_run and explore.retrieval_run are required: train the two runs "
            f"first on the same data (`{TRAIN_RANKER}` and `{TRAIN_RETRIEVAL}`, e.g. the "
            "*_tiny experiments) and pass their folders"
        )
    rank_cfg = load_run_config(node.ranker_run, "explore.ranker_run", "ranking", TRAIN_RANKER)
    ret_cfg = load_run_config(
        node.retrieval_run, "explore.retrieval_run", "retrieval", TRAIN_RETRIEVAL
    )
    _check_same_data(rank_cfg, ret_cfg)
    settings = _settings(node)
    split = dict(_container(rank_cfg.data.split) or {})
    if split.get("kind", "temporal") != "temporal":
        raise ConfigError("explore.ranker_run: the ranker's data.split.kind must be temporal")

    # The ranker: model, fitted preprocessor, and the app at the start of its test period.
    rank_dir = Path(node.ranker_run)
    metrics = json.loads((rank_dir / "metrics.json").read_text())
    dataset = load_prepared(Path(metrics["data"]["path"]))
    model = model_builder(rank_cfg.model, rank_cfg, "model")(dataset.spec)
    model.load_state_dict(torch.load(rank_dir / "model.pt", map_location="cpu"))
    model.eval()
    source = build_source(rank_cfg)[0]
    if not isinstance(source, SocialSource):
        raise ConfigError("explore.ranker_run: the run's data source is not the synthetic app")
    impressions = pl.concat(list(source.iter_chunks()))
    now = temporal_boundary(impressions, split.get("fractions", (0.8, 0.1, 0.1)))
    app = social_app(source.config, impressions, now, world=source.world)

    # Retrieval: item vectors by post id, user vectors with their history before `now`.
    ret_dir = Path(node.retrieval_run)
    run = load_two_tower_run(retrieval_plan_from_config(ret_cfg, ret_dir), ret_dir / "model.pt")
    ids, vecs = item_vectors(run)
    item_by_post, _ = rows_by_id(ids, vecs, len(app.catalog))
    user_ids, user_vecs = user_vectors_at(run, now)
    user_by_id, known = rows_by_id(user_ids, user_vecs, app.n_users)
    index, index_from = _retrieval_index(ret_cfg, ret_dir, str(node.index), ids, vecs)
    funnel = build_social_funnel(
        app, model, dataset.preprocessor(), index, item_by_post, user_by_id, known, settings
    )

    if node.user is not None:
        user = int(node.user)
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
        users = held_out_users(app, int(node.n_users), known)
    pages = [funnel.recommend(u, now) for u in users]
    lines: list[str] = []
    for page in pages:
        lines += page_lines(page, funnel.ranker.tasks)
    result: dict[str, Any] = {
        "ranker_run": str(rank_dir),
        "retrieval_run": str(ret_dir),
        "now": now,
        "index": {"kind": index.kind, "from": index_from},
        "settings": {
            "sizes": _container(node.sizes),
            "quotas": funnel.quotas,
            "value": settings.value.to_dict(),
            "diversity": _container(node.diversity),
        },
        "pages": [p.to_dict() for p in pages],
    }
    if node.evaluate:
        eval_users = held_out_users(app, int(node.eval_users), known)
        ev = evaluate_funnel(funnel, eval_users, now, social_truth(app.world))
        result["evaluation"] = ev.to_dict()
        lines += evaluation_lines(ev)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "explore.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    lines.append(f"explore: {path}")
    return result, lines
