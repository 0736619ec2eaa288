"""The multi-stage recommendation funnel: retrieve -> rank -> re-rank.

Modules: ``sources`` (candidate sources and dedup merge), ``ranker`` (ranking stage and the
synthetic app's feature builder), ``value`` (value formula), ``diversity`` (filters and greedy
diverse re-rank), ``funnel`` (:class:`Funnel`, :class:`Page`, :func:`explore`), ``evaluate``
(offline gain against retrieval order and ranking-only, scored by the synthetic ground truth).
"""

from recsys.ranking.diversity import (
    AvailableFilter,
    BlockedAuthorFilter,
    DiversityRules,
    ItemCatalog,
    SeenFilter,
    diversify,
)
from recsys.ranking.funnel import Funnel, Page, PageItem, StageSizes, explore
from recsys.ranking.ranker import ModelRanker, Ranker, SocialFeatureBuilder
from recsys.ranking.sources import (
    AnnSource,
    BruteForceIndex,
    CandidateIndex,
    CandidateSource,
    InteractionLog,
    ItemToItemSource,
    PopularRecentSource,
    UnknownUserError,
    build_index,
    merge_candidates,
)
from recsys.ranking.value import ValueFormula

__all__ = [
    "AnnSource",
    "AvailableFilter",
    "BlockedAuthorFilter",
    "BruteForceIndex",
    "CandidateIndex",
    "CandidateSource",
    "DiversityRules",
    "Funnel",
    "InteractionLog",
    "ItemCatalog",
    "ItemToItemSource",
    "ModelRanker",
    "Page",
    "PageItem",
    "PopularRecentSource",
    "Ranker",
    "SeenFilter",
    "SocialFeatureBuilder",
    "StageSizes",
    "UnknownUserError",
    "ValueFormula",
    "build_index",
    "diversify",
    "explore",
    "merge_candidates",
]
