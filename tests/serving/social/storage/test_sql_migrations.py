"""The Alembic migrations produce exactly schema.metadata, on SQLite and PostgreSQL, and the
SQLite engine is set up for concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from serving.social.storage.sql import (
    current_revision,
    head_revision,
    make_engine,
    metadata,
    migrate,
)


def test_migrations_match_the_metadata(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_migrate_is_idempotent_and_at_head(engine: Engine) -> None:
    head = head_revision()
    assert current_revision(engine) == head
    assert migrate(engine) == head
    assert migrate(engine) == head
    assert current_revision(engine) == head
    tables = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables


def test_fresh_sqlite_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.sqlite3'}")
    assert current_revision(engine) is None
    assert migrate(engine) == head_revision()
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == 30_000
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()


def test_sqlite_concurrent_read_then_write_transactions_serialize(tmp_path: Path) -> None:
    """Read-then-write transactions in many threads: with BEGIN IMMEDIATE none fails with
    "database is locked" (a deferred transaction could not upgrade its read lock)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        connection.exec_driver_sql("INSERT INTO counter VALUES (0)")
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with engine.begin() as connection:
                    n = connection.exec_driver_sql("SELECT n FROM counter").scalar_one()
                    connection.exec_driver_sql(f"UPDATE counter SET n = {n + 1}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT n FROM counter").scalar_one() == 120
    engine.dispose()


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    from alembic import command

    from serving.social.storage.sql.engine import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    migrate(engine)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert current_revision(engine) is None
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    assert migrate(engine) == head_revision()
    engine.dispose()


def _bump_in_process(url: str, times: int) -> None:
    engine = make_engine(url)
    for _ in range(times):
        with engine.begin() as connection:
            n = connection.exec_driver_sql("SELECT n FROM counter").scalar_one()
            connection.exec_driver_sql(f"UPDATE counter SET n = {n + 1}")
    engine.dispose()


def test_sqlite_writers_in_several_processes_serialize(tmp_path: Path) -> None:
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)  # concurrent processes may also migrate: the second finds it done
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        connection.exec_driver_sql("INSERT INTO counter VALUES (0)")
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_bump_in_process, args=(url, 25)) for _ in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT n FROM counter").scalar_one() == 75
    engine.dispose()


def test_an_idle_pooled_connection_killed_by_the_server_is_replaced(postgres_url: str) -> None:
    """The pool pings a connection that sat idle (here: any) and swaps a dead one for a new
    one, so the caller never sees the dead socket; one in steady use is not pinged."""
    import psycopg

    from serving.social.storage.sql.engine import ping_idle_connections

    engine = sa.create_engine(postgres_url, pool_size=1, max_overflow=0)
    ping_idle_connections(engine, idle_s=0.0)
    with engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with engine.connect() as connection:  # the dead one is detected at checkout
        fresh = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    assert fresh != pid
    engine.dispose()
