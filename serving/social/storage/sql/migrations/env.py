"""Alembic environment: runs migrations on the connection passed in
``config.attributes["connection"]`` (see :func:`serving.social.storage.sql.engine.migrate`), or
on a fresh engine for ``sqlalchemy.url`` when run from the ``alembic`` command line."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from serving.social.storage.sql.schema import metadata


def _in_alembic() -> bool:
    """Whether Alembic is running this file (importing it elsewhere, e.g. for doctest
    collection, must do nothing)."""
    try:
        context.config  # noqa: B018 - a proxy that raises outside an Alembic command
    except AttributeError:
        return False
    return True


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from serving.social.storage.sql.engine import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if _in_alembic():
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported")
    run_migrations_online()
