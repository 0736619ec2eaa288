"""Helpers for tests of code that runs on the SQL adapters: a migrated, empty database on SQLite
or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from serving.social.storage.sql import schema
from serving.social.storage.sql.engine import make_engine, migrate


def clear_tables(engine: Engine) -> None:
    """Deletes every row of every table (ids restart at 1 on PostgreSQL; on SQLite the
    ``INTEGER PRIMARY KEY`` ids continue above the highest one left, i.e. from 1 again)."""
    names = [table.name for table in schema.ALL_TABLES]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            quoted = ", ".join(f'"{name}"' for name in names)
            connection.exec_driver_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
        else:
            for name in reversed(names):
                connection.exec_driver_sql(f'DELETE FROM "{name}"')


def fresh_engine(backend: str, *, tmp_path: Path | None = None, url: str | None = None) -> Engine:
    """A migrated engine with empty tables: ``backend`` ``sqlite`` makes a new file under
    ``tmp_path``; ``postgresql`` uses the database at ``url`` and clears its tables."""
    if backend == "sqlite":
        if tmp_path is None:
            raise ValueError("an SQLite test database needs tmp_path")
        engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'social.sqlite3'}")
        migrate(engine)
        return engine
    if backend == "postgresql":
        if url is None:
            raise ValueError("a PostgreSQL test database needs url")
        engine = make_engine(url, pool_size=5, max_overflow=10)
        migrate(engine)
        clear_tables(engine)
        return engine
    raise ValueError(f"backend must be 'sqlite' or 'postgresql', got {backend!r}")
