"""The feature store (Feast): point-in-time training sets, materialization, online features.

Modules: :mod:`.schema` (names of sources, views, features and their defaults; no Feast),
:mod:`.tables` (the Parquet sources built from event tables with Polars; no Feast),
:mod:`.definitions` (the Feast entities and views), :mod:`.store` (opening the store from
settings: SQLite or Redis online, DuckDB offline), :mod:`.training` (``get_historical_features``
for a label table; :class:`FeastSocialSource`, the rankers' ``data=feast_social``),
:mod:`.materialize` (resumable, loudly failing materialization), :mod:`.online` (online
features through Feast, and the direct reads of Feast's Redis and SQLite layouts),
:mod:`.layout` (entity keys, references and values without Feast), :mod:`.redis_layout` and
:mod:`.sqlite_layout` (the two online stores' layouts read without Feast).

This package is the only importer of Feast in the project, and only in the modules that need
it (definitions, store, training, materialize, online), inside their functions where they can:
``import recsys.features`` loads nothing (``import feast`` takes seconds and loads torch), and
``schema``, ``layout``, ``redis_layout`` and ``sqlite_layout`` never load Feast (the inference
service reads them). Import
names from the modules. Imports: ``data`` (the social schema, the raw-source protocol),
``types``.
"""
