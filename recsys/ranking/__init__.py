"""The multi-stage recommendation funnel: retrieve -> rank -> re-rank.

Modules: ``sources`` (candidate sources and dedup merge), ``ranker`` (ranking stage and the
synthetic app's feature builder), ``value`` (value formula), ``diversity`` (filters and greedy
diverse re-rank), ``funnel`` (:class:`Funnel`, :class:`Page`, :func:`explore`), ``evaluate``
(offline gain against retrieval order and ranking-only, scored by the synthetic ground truth).

The public names below are loaded lazily (PEP 562): ``from recsys.ranking import Funnel`` imports
``recsys.ranking.funnel`` on first use, so ``import recsys.ranking.value`` (torch-free, read by
``serving.inference``) loads nothing else of the package. Imports: ``retrieval``, ``data``,
``types`` (and numpy; torch through them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_SUBMODULE = {
    "AvailableFilter": "diversity",
    "BlockedAuthorFilter": "diversity",
    "DiversityRules": "diversity",
    "ItemCatalog": "diversity",
    "SeenFilter": "diversity",
    "diversify": "diversity",
    "Funnel": "funnel",
    "Page": "funnel",
    "PageItem": "funnel",
    "StageSizes": "funnel",
    "explore": "funnel",
    "ModelRanker": "ranker",
    "Ranker": "ranker",
    "SocialFeatureBuilder": "ranker",
    "AnnSource": "sources",
    "BruteForceIndex": "sources",
    "CandidateIndex": "sources",
    "CandidateSource": "sources",
    "InteractionLog": "sources",
    "ItemToItemSource": "sources",
    "PopularRecentSource": "sources",
    "UnknownUserError": "sources",
    "build_index": "sources",
    "merge_candidates": "sources",
    "ValueFormula": "value",
}

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


def __getattr__(name: str) -> Any:
    """Imports the submodule that defines ``name`` on first access (PEP 562)."""
    module = _SUBMODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
