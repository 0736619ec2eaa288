"""Engines for the metadata database and its Alembic migrations.

:func:`make_engine` configures SQLite for several writer threads and processes sharing one file
(WAL, a 30 s busy timeout, and every transaction opened with ``BEGIN IMMEDIATE`` so that
writers queue for the lock up front instead of failing with "database is locked" when a read
transaction later tries to write) and PostgreSQL with a connection pool that pings a
connection before reuse when it sat idle (:func:`ping_idle_connections`).

:func:`migrate` upgrades a database to the newest revision in ``migrations/versions`` without
an ``alembic.ini``: the script location is this package's ``migrations`` folder.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Execution option of connections that only read (see ``SqlMetadataStore.reading``).
READ_ONLY = "social_read_only"
#: PostgreSQL advisory lock key held while migrating (any constant unique to this schema).
MIGRATION_LOCK_ID = 7_301_946_211


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False
) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    SQLite: the file's folder is created; connections use WAL, ``busy_timeout`` 30 s, foreign
    keys on and ``synchronous=NORMAL``; pysqlite's own transaction handling is switched off and
    every transaction begins with ``BEGIN IMMEDIATE`` (writers serialize on the lock).
    PostgreSQL: a pool of ``pool_size`` (+ ``max_overflow``) connections, pinged before reuse
    when idle for :data:`PING_AFTER_IDLE_S` (:func:`ping_idle_connections`).

    >>> make_engine("sqlite://").dialect.name
    'sqlite'
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow)
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=3600,
        echo=echo,
    )
    ping_idle_connections(engine)
    return engine


#: A pooled connection idle at least this long is pinged before reuse.
PING_AFTER_IDLE_S = 5.0


def ping_idle_connections(engine: Engine, idle_s: float = PING_AFTER_IDLE_S) -> None:
    """Pings a connection taken from the pool when it sat unused for ``idle_s`` or more (a
    server restart or a dropped socket then costs a reconnect, not a failed request); one in
    steady use is handed out as it is. ``pool_pre_ping`` would ping on every checkout: one more
    round trip on every read (a feed page is only four)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # leaves no transaction open
        except Exception as error:
            # the pool discards this connection and checks out (or opens) another
            raise sa.exc.DisconnectionError(f"stale pooled connection: {error}") from error


def _sqlite_engine(url: str, *, echo: bool, pool_size: int, max_overflow: int) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    in_memory = not database or database == ":memory:"
    pool_args = {} if in_memory else {"pool_size": pool_size, "max_overflow": max_overflow}
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        echo=echo,
        **pool_args,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # autocommit at the driver level: SQLAlchemy's "begin" event below opens transactions
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the write lock up front (no deadlocking lock upgrades); read-only
        # connections (execution option READ_ONLY) take a deferred, shared transaction.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config pointing at this package's migrations, optionally bound to
    ``connection`` (read by ``migrations/env.py`` from ``config.attributes["connection"]``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision in ``migrations/versions`` (read once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR / 'versions'}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for a database never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> str:
    """Upgrades the database to the head revision (a no-op when it is there); returns it.

    Safe to call from several processes at once: SQLite serializes them on ``BEGIN
    IMMEDIATE``, PostgreSQL on a transaction-scoped advisory lock."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        command.upgrade(alembic_config(connection), "head")
    revision = current_revision(engine)
    if revision is None:  # pragma: no cover - upgrade always stamps
        raise RuntimeError("migration finished without a revision stamp")
    return revision
