"""What every aggregate's part of :class:`~.store.SqlMetadataTx` builds on: the open
connection, the statement helpers they share, and the one way a row becomes a record
(:func:`record`: the dataclass's fields read from ``row._mapping`` by name).

Idempotent writes (follows, blocks, likes, saves, story views, event appends, usernames) use
``INSERT .. ON CONFLICT DO NOTHING RETURNING`` rather than catching ``IntegrityError``, which
would abort the surrounding PostgreSQL transaction.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from serving.social.storage.sql._util import chunks, upsert_insert

R = TypeVar("R")

#: PostgreSQL statements of :meth:`TxBase._by_ids`, built once per name.
_PG_BY_IDS: dict[str, Any] = {}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def record(cls: type[R], row: sa.Row[Any]) -> R:
    """The dataclass ``cls`` with each field read from the row's column of the same name
    (columns the record lacks, e.g. ``password_hash``, are left out; a field the row lacks is a
    ``KeyError``). Column types convert values, e.g. media renditions
    (:class:`~serving.social.storage.sql.schema.Renditions`).

    The records are plain frozen dataclasses without ``__post_init__``, so the instance's
    ``__dict__`` is filled directly (a feed read builds about a hundred of them; the generated
    ``__init__`` of a frozen dataclass sets each field through ``object.__setattr__``)."""
    mapping = row._mapping
    made = object.__new__(cls)
    made.__dict__.update({name: mapping[name] for name in _field_names(cls)})
    return made


def records(cls: type[R], rows: Iterable[sa.Row[Any]]) -> list[R]:
    """:func:`record` of each row, in order."""
    return [record(cls, row) for row in rows]


class TxBase:
    """One open connection inside a transaction, and the statement helpers the aggregates'
    parts (users, graph, posts, stories, interactions, events) share."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self._dialect = connection.dialect.name

    def _run(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        return self.connection.execute(statement, params)

    def _one(self, cls: type[R], statement: Any) -> R | None:
        """The first row of ``statement`` as a ``cls`` record, or None."""
        row = self._run(statement).first()
        return record(cls, row) if row is not None else None

    def _records_by_id(
        self, cls: type[R], name: str, table: sa.Table, ids: Sequence[int], *where: Any
    ) -> dict[int, R]:
        """``{id: record}`` of the rows of ``table`` whose ``id`` is among ``ids`` and that meet
        the fixed conditions ``where`` (the PostgreSQL statement is kept as ``name``)."""
        found: dict[int, R] = {}

        def build(match: Callable[[Any], Any]) -> Any:
            return sa.select(table).where(match(table.c.id), *where)

        for chunk in chunks(ids):
            found.update((row.id, record(cls, row)) for row in self._by_ids(name, build, chunk))
        return found

    def _by_ids(
        self, name: str, build: Callable[[Callable[[Any], Any]], Any], ids: list[int]
    ) -> sa.CursorResult[Any]:
        """Runs the statement ``build(match)`` where ``match(column)`` restricts ``column`` to
        ``ids``. On PostgreSQL the statement is built once per ``name`` with
        ``column = ANY(:ids)`` and reused (compiled and prepared once); on SQLite it is built
        with a plain ``IN`` each time."""
        if self._dialect == "postgresql":
            statement = _PG_BY_IDS.get(name)
            if statement is None:
                ids_param = sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger))
                statement = _PG_BY_IDS.setdefault(name, build(lambda c: c == sa.any_(ids_param)))
            return self._run(statement, {"ids": ids})
        return self._run(build(lambda c: c.in_(ids)))

    def _insert(self, table: sa.Table) -> Any:
        return upsert_insert(self._dialect, table)

    def _insert_ignore(self, table: sa.Table, **values: Any) -> bool:
        """Inserts one row unless its primary key exists; True if it was inserted."""
        pk = [c.name for c in table.primary_key.columns]
        statement = (
            self._insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=pk)
            .returning(*table.primary_key.columns)
        )
        return self._run(statement).first() is not None

    def _create(self, cls: type[R], table: sa.Table, **values: Any) -> R:
        """Inserts one row and returns it, as stored (``RETURNING`` every column), as a ``cls``
        record."""
        return record(cls, self._run(sa.insert(table).values(**values).returning(table)).one())

    def _delete(self, table: sa.Table, **equal: Any) -> bool:
        """Deletes the rows whose columns equal ``equal``; True if there were any."""
        return self._run(sa.delete(table).where(*_equal(table, equal))).rowcount > 0

    def _exists(self, table: sa.Table, **equal: Any) -> bool:
        """Whether a row has columns equal to ``equal``."""
        statement = sa.select(sa.literal(1)).select_from(table).where(*_equal(table, equal))
        return self._run(statement.limit(1)).first() is not None

    def _count(self, table: sa.Table, **equal: Any) -> int:
        """How many rows have columns equal to ``equal``."""
        statement = sa.select(sa.func.count()).select_from(table).where(*_equal(table, equal))
        return int(self._run(statement).scalar_one())


def _equal(table: sa.Table, equal: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
    """``column == value`` for each ``name: value`` of ``equal``."""
    return [table.c[name] == value for name, value in equal.items()]
