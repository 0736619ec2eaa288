"""The feature store (Feast): point-in-time training sets, materialization, online features.

Modules: :mod:`.schema` (names of sources, views, features and their defaults; no Feast),
:mod:`.tables` (the Parquet sources built from event tables with Polars; no Feast),
:mod:`.definitions` (the Feast entities and views), :mod:`.store` (opening the store from
settings: SQLite or Redis online, DuckDB offline), :mod:`.training` (``get_historical_features``
for a label table; :class:`FeastSocialSource`, the rankers' ``data=feast_social``),
:mod:`.materialize` (resumable, loudly failing materialization), :mod:`.online` (online
features through Feast, and the direct Redis read of Feast's layout).

This package is the only importer of Feast in the project. Importing ``recsys.features``
loads no Feast (``import feast`` takes seconds): the public names below load their module on
first use (PEP 562). Imports: ``data`` (the social schema, the raw-source protocol), ``types``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.features.materialize import MaterializationError, check_complete, materialize
    from recsys.features.online import RedisFeatureReader, fill_defaults, online_features
    from recsys.features.store import FeatureStoreError, StoreSettings, open_store
    from recsys.features.tables import EventTables, build_sources, write_sources
    from recsys.features.training import FeastSocialSource, historical_features

_SUBMODULE = {
    "MaterializationError": "materialize",
    "check_complete": "materialize",
    "materialize": "materialize",
    "RedisFeatureReader": "online",
    "fill_defaults": "online",
    "online_features": "online",
    "FeatureStoreError": "store",
    "StoreSettings": "store",
    "open_store": "store",
    "EventTables": "tables",
    "build_sources": "tables",
    "write_sources": "tables",
    "FeastSocialSource": "training",
    "historical_features": "training",
}

__all__ = [
    "EventTables",
    "FeastSocialSource",
    "FeatureStoreError",
    "MaterializationError",
    "RedisFeatureReader",
    "StoreSettings",
    "build_sources",
    "check_complete",
    "fill_defaults",
    "historical_features",
    "materialize",
    "online_features",
    "open_store",
    "write_sources",
]


def __getattr__(name: str) -> Any:
    module = _SUBMODULE.get(name)
    if module is None:
        raise AttributeError(f"module 'recsys.features' has no attribute {name!r}")
    return getattr(importlib.import_module(f"recsys.features.{module}"), name)
