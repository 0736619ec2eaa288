"""Feast's SQLite online-store layout read without Feast (``import feast`` loads torch, which
the inference service must not), with the standard library's ``sqlite3``: the same interface
as :class:`recsys.features.redis_layout.LayoutReader`.

The layout (Feast 0.67, ``entity_key_serialization_version: 3``): one table per feature view,
named ``<project>_<view>``, one row per entity and feature::

    entity_key BLOB      -- Feast's serialize_entity_key (recsys.features.layout.EntityKey)
    feature_name TEXT    -- the feature's name in the view
    value BLOB           -- a serialized ValueProto (recsys.features.layout.decode_value)
    value_text TEXT, vector_value BLOB, event_ts timestamp, created_ts timestamp
    PRIMARY KEY (entity_key, feature_name)

An entity without rows, or a feature without its row, reads as None, as Feast's own
``get_online_features`` returns it (the tests compare both). The database is opened read-only
(:func:`open_online_db`), so a reader never changes the store Feast materializes into.

Example:
    >>> table_name("social", "user_profile")
    'social_user_profile'
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.features.layout import EntityKey, decode_value, split_refs

__all__ = ["SqliteLayoutReader", "open_online_db", "table_name"]

_CHUNK = 500
"""Ids per query (well under SQLite's limit on bound parameters)."""


def table_name(project: str, view: str) -> str:
    """The online table of ``view`` (Feast's ``compute_table_id`` without versioning)."""
    return f"{project}_{view}"


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def open_online_db(path: str | Path) -> sqlite3.Connection:
    """Feast's SQLite online store at ``path``, read-only, usable from any thread (reads
    only; SQLite serializes them). A missing file is a ``FileNotFoundError`` naming it."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no SQLite online store at {path} (run feast materialize)")
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)


class SqliteLayoutReader:
    """Reads ``refs`` (``view:feature``, views of one entity with a string join key) for many
    ids from ``conn`` (:func:`open_online_db`): one ``SELECT`` per view and 500 ids.

    A view whose table is not in the database (the store not applied, or another project) is
    a ``ValueError`` naming the table, here rather than at the first request.
    """

    def __init__(
        self, conn: sqlite3.Connection, project: str, join_key: str, refs: Sequence[str]
    ) -> None:
        pairs = split_refs(refs)
        self.conn = conn
        self.features = [feature for _, feature in pairs]
        self._pairs = pairs
        self._entity = EntityKey(join_key)
        self._views: dict[str, list[str]] = {}
        for view, feature in pairs:
            self._views.setdefault(view, []).append(feature)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        for view in self._views:
            if table_name(project, view) not in tables:
                raise ValueError(
                    f"the SQLite online store has no table {table_name(project, view)!r} "
                    f"(view {view!r} of project {project!r}): run feast apply and materialize"
                )
        self._tables = {view: _quoted(table_name(project, view)) for view in self._views}

    def key(self, entity_id: Any) -> bytes:
        """The ``entity_key`` blob of one entity."""
        return self._entity.key(entity_id)

    def fetch(self, ids: Sequence[Any]) -> dict[str, list[Any]]:
        """``{feature: [value per id]}`` (None where absent)."""
        keys = [self.key(i) for i in ids]
        distinct = list(dict.fromkeys(keys))
        found: dict[tuple[str, bytes, str], Any] = {}
        for view, features in self._views.items():
            names = ",".join("?" * len(features))
            for start in range(0, len(distinct), _CHUNK):
                chunk = distinct[start : start + _CHUNK]
                query = (
                    f"SELECT entity_key, feature_name, value FROM {self._tables[view]} "
                    f"WHERE entity_key IN ({','.join('?' * len(chunk))}) "
                    f"AND feature_name IN ({names})"
                )
                for key, feature, raw in self.conn.execute(query, [*chunk, *features]):
                    found[(view, bytes(key), feature)] = None if raw is None else decode_value(raw)
        return {f: [found.get((v, k, f)) for k in keys] for v, f in self._pairs}
