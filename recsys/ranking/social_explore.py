"""The Explore surface of the synthetic social app, assembled from trained parts.

Plain objects in, a :class:`~recsys.ranking.funnel.Funnel` out (the config layer,
:mod:`recsys.apps.explore`, reads the run folders and calls these):

* :func:`social_app`: the app at request time ``now`` — entity tables, the interaction log
  strictly before ``now`` (seen items, histories, popularity), the item catalog and the world
  (whose hidden truth scores offline evaluation);
* :func:`temporal_boundary`: ``now`` = the first timestamp of the held-out (test) period of a
  temporal split, so the ranker never trained on what the funnel is evaluated on;
* :func:`build_social_funnel`: sources (two-tower ANN, item-to-item over the same item
  vectors, popular-recent), the model ranker, value formula, filters, diversity rules;
* :func:`page_lines` / :func:`evaluation_lines`: the printed summary.

Example (see ``tests/cli/test_explore.py`` for real vectors and a trained ranker)::

    app = social_app(config, impressions, now=temporal_boundary(impressions, (0.8, 0.1, 0.1)))
    funnel = build_social_funnel(app, model, preprocessor, index, item_vecs, user_vecs, known)
    page = explore(user, funnel, app.now)
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from torch import nn

from recsys.data.preprocess import FittedPreprocessor
from recsys.data.split import split_sizes
from recsys.data.synthetic import TASKS, SocialConfig, SocialWorld, build_world, write_entities
from recsys.ranking.diversity import (
    AvailableFilter,
    BlockedAuthorFilter,
    DiversityRules,
    ItemCatalog,
    SeenFilter,
)
from recsys.ranking.evaluate import FunnelEvaluation
from recsys.ranking.funnel import Funnel, Page, StageSizes
from recsys.ranking.ranker import ModelRanker, SocialFeatureBuilder
from recsys.ranking.sources import (
    AnnSource,
    CandidateIndex,
    InteractionLog,
    ItemToItemSource,
    PopularRecentSource,
    UnknownUserError,
)
from recsys.ranking.value import ValueFormula

__all__ = [
    "ExploreSettings",
    "KnownUserAnnSource",
    "SocialApp",
    "build_social_funnel",
    "evaluation_lines",
    "held_out_users",
    "page_lines",
    "rows_by_id",
    "social_app",
    "temporal_boundary",
]


@dataclass(frozen=True)
class ExploreSettings:
    """Funnel settings: stage sizes, per-source quotas (``ann``, ``item2item``, ``popular``;
    ``None``: split evenly), value formula, diversity rules, the popular-recent window, the
    item-to-item history length and whether unknown users fall back to popular items."""

    sizes: StageSizes = field(default_factory=StageSizes)
    quotas: Mapping[str, int] | None = None
    value: ValueFormula = field(default_factory=ValueFormula)
    diversity: DiversityRules = field(default_factory=lambda: DiversityRules(max_per_topic=4))
    popular_window_s: int = 2 * 86_400
    item2item_recent: int = 5
    cold_start: bool = False


@dataclass
class SocialApp:
    """The synthetic app at request time ``now``.

    Attributes:
        users, posts, follows: entity tables (as written by ``write_entities``).
        log: impressions strictly before ``now``.
        held_out: impressions at or after ``now`` (the evaluation period).
        catalog: authors, topics, creation times by post id.
        world: the generator's world (its truth scores pages offline).
    """

    users: pl.DataFrame
    posts: pl.DataFrame
    follows: pl.DataFrame
    log: InteractionLog
    held_out: pl.DataFrame
    catalog: ItemCatalog
    world: SocialWorld
    now: int

    @property
    def n_users(self) -> int:
        return self.users.height


def temporal_boundary(impressions: pl.DataFrame, fractions: Sequence[float]) -> int:
    """The first timestamp of the test part of a temporal split (key ``(timestamp, _row)``)
    of ``impressions`` with train/valid/test ``fractions``."""
    n_train, n_valid, n_test = split_sizes(impressions.height, fractions)
    if n_test == 0:
        raise ValueError(f"the temporal split {list(fractions)} leaves no held-out period")
    ts = impressions.sort(["timestamp", "_row"])["timestamp"]
    return int(ts[n_train + n_valid])


def social_app(
    config: SocialConfig, impressions: pl.DataFrame, now: int, world: SocialWorld | None = None
) -> SocialApp:
    """The app of ``config`` at ``now`` from its ``impressions`` (all of them, any order)."""
    with tempfile.TemporaryDirectory(prefix="recsys-entities-") as tmp:
        paths = write_entities(config, tmp)
        ents = {k: pl.read_parquet(p) for k, p in paths.items()}
    before = impressions.filter(pl.col("timestamp") < now)
    return SocialApp(
        users=ents["users"],
        posts=ents["posts"],
        follows=ents["follows"],
        log=InteractionLog.from_frame(before, TASKS),
        held_out=impressions.filter(pl.col("timestamp") >= now),
        catalog=ItemCatalog.from_posts(ents["posts"]),
        world=world if world is not None else build_world(config),
        now=int(now),
    )


def held_out_users(app: SocialApp, n: int, eligible: np.ndarray | None = None) -> list[int]:
    """The ``n`` users with the most impressions in the held-out period (ties: lower id),
    restricted to ``eligible`` (a boolean mask by user id) when given."""
    counts = (
        app.held_out.group_by(pl.col("user_id").cast(pl.Int64))
        .len()
        .sort(["len", "user_id"], descending=[True, False])
    )
    users = counts["user_id"].to_numpy()
    if eligible is not None:
        users = users[(users < len(eligible)) & eligible[np.clip(users, 0, len(eligible) - 1)]]
    return [int(u) for u in users[:n]]


def rows_by_id(ids: np.ndarray, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n x D vectors with row = id, n bool: has a vector)``; other rows are zero."""
    out = np.zeros((n, vectors.shape[1]), np.float32)
    known = np.zeros(n, dtype=bool)
    keep = (ids >= 0) & (ids < n)
    out[ids[keep]] = vectors[keep]
    known[ids[keep]] = True
    return out, known


class KnownUserAnnSource(AnnSource):
    """:class:`AnnSource` over a user table with gaps: users without a vector (``known`` false,
    e.g. no interaction when the retrieval model was trained) raise :class:`UnknownUserError`."""

    def __init__(
        self, index: CandidateIndex, user_vectors: np.ndarray, known: np.ndarray, name: str = "ann"
    ) -> None:
        super().__init__(index, user_vectors, name)
        self.known = np.asarray(known, dtype=bool)

    def candidates(self, user: int, k: int, now: int) -> tuple[np.ndarray, np.ndarray]:
        if 0 <= user < len(self.known) and not self.known[user]:
            raise UnknownUserError(f"user {user} has no two-tower vector (not in its training)")
        return super().candidates(user, k, now)


def build_social_funnel(
    app: SocialApp,
    ranker: nn.Module,
    preprocessor: FittedPreprocessor,
    index: CandidateIndex,
    item_vectors: np.ndarray,
    user_vectors: np.ndarray,
    known_users: np.ndarray,
    settings: ExploreSettings | None = None,
) -> Funnel:
    """The Explore funnel.

    Args:
        app: the app at request time.
        ranker: a multi-task ranker (``forward(dense, KJT) -> B x T`` logits, ``task_names``).
        preprocessor: the ranker's fitted preprocessor.
        index: nearest-neighbour index over item vectors, ids = post ids.
        item_vectors: ``P x D``, row = post id (zeros for items without a vector).
        user_vectors: ``U x D``, row = user id; ``known_users``: ``U`` bool, has a vector.
        settings: sizes, quotas, value, diversity (defaults: :class:`ExploreSettings`).
    """
    s = settings if settings is not None else ExploreSettings()
    features = SocialFeatureBuilder(app.users, app.posts, app.follows, preprocessor)
    return Funnel(
        sources=[
            KnownUserAnnSource(index, user_vectors, known_users),
            ItemToItemSource(index, item_vectors, app.log, n_recent=s.item2item_recent),
            PopularRecentSource(app.log, window_s=s.popular_window_s),
        ],
        ranker=ModelRanker(ranker, features),
        value=s.value,
        catalog=app.catalog,
        filters=[
            SeenFilter(app.log),
            BlockedAuthorFilter(app.catalog, {}),
            AvailableFilter(app.catalog),
        ],
        diversity=s.diversity,
        sizes=s.sizes,
        quotas=dict(s.quotas) if s.quotas is not None else None,
        cold_start=s.cold_start,
    )


def page_lines(page: Page, tasks: Sequence[str]) -> list[str]:
    """The page as a table (position, item, author, topic, value, probabilities, sources),
    then its per-stage latencies, stage counts and diversity relaxations."""
    c = page.counts
    lines = [
        f"explore user {page.user} at {page.now}: {len(page.items)} items "
        f"(retrieved {c.get('retrieved', 0)}, after filters {c.get('filtered', 0)}, "
        f"ranked {c.get('ranked', 0)})",
        f"{'pos':>3} {'item':>7} {'author':>6} {'topic':>5} {'value':>7}  "
        + " ".join(f"{t[:7]:>7}" for t in tasks)
        + "  sources",
    ]
    for it in page.items:
        probs = " ".join(f"{it.probs.get(t, float('nan')):7.4f}" for t in tasks)
        lines.append(
            f"{it.page_position + 1:>3} {it.item_id:>7} {it.author:>6} {it.topic:>5} "
            f"{it.value:7.4f}  {probs}  {','.join(it.sources)}"
        )
    lat = page.latency_ms
    lines.append(
        "latency ms: "
        + "  ".join(f"{k} {lat[k]:.1f}" for k in ("retrieve", "rank", "rerank", "total"))
    )
    if page.diversity.relaxed:
        relaxed = ", ".join(f"{p + 1}: {'+'.join(r)}" for p, r in page.diversity.relaxed)
        lines.append(f"diversity relaxed at positions {relaxed}")
    lines += [f"note: {n}" for n in page.notes]
    return lines


def evaluation_lines(ev: FunnelEvaluation) -> list[str]:
    """Mean true page value of retrieval order, ranking without diversity and the funnel."""
    v = ev.value
    return [
        f"offline value on {ev.n_requests} held-out requests (true probabilities, value "
        f"formula): retrieval {v['retrieval']:.4f}  ranked {v['ranked']:.4f}  "
        f"funnel {v['funnel']:.4f}",
        f"gain funnel vs retrieval {ev.gain('funnel', 'retrieval'):+.1%}  "
        f"ranked vs retrieval {ev.gain('ranked', 'retrieval'):+.1%}  "
        f"funnel vs ranked {ev.gain('funnel', 'ranked'):+.1%}",
    ]
