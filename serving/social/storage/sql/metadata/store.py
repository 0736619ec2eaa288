"""The store and its transaction, composed of the aggregates' parts: :class:`SqlMetadataTx`
is one connection with the methods of :mod:`.users`, :mod:`.graph`, :mod:`.posts`,
:mod:`.stories`, :mod:`.interactions` and :mod:`.events`; :class:`SqlMetadataStore` opens it
and adds the engine-level work of :class:`~.events.EventLog`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from serving.social.storage.sql.engine import (
    READ_ONLY,
    current_revision,
    head_revision,
    make_engine,
    migrate,
)
from serving.social.storage.sql.metadata.events import EventLog, EventsTx, IdempotencyTx
from serving.social.storage.sql.metadata.graph import GraphTx
from serving.social.storage.sql.metadata.interactions import InteractionsTx
from serving.social.storage.sql.metadata.posts import PostsTx
from serving.social.storage.sql.metadata.stories import StoriesTx
from serving.social.storage.sql.metadata.users import UsersTx


class SqlMetadataTx(UsersTx, GraphTx, PostsTx, StoriesTx, InteractionsTx, EventsTx, IdempotencyTx):
    """Every :class:`~serving.social.storage.interfaces.MetadataTx` method on one open
    connection inside a transaction; valid only inside :meth:`SqlMetadataStore.transaction`
    (or, for reads, :meth:`SqlMetadataStore.reading`)."""


class SqlMetadataStore(EventLog):
    """:class:`~serving.social.storage.interfaces.MetadataStore` on an SQLAlchemy engine whose
    database has been migrated (:func:`~serving.social.storage.sql.engine.migrate`): SQLite in
    embedded mode, PostgreSQL in production, the same code and schema for both."""

    @classmethod
    def from_url(cls, url: str, *, run_migrations: bool = True) -> SqlMetadataStore:
        """A store on a new engine for ``url``, migrated to head unless told otherwise."""
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[SqlMetadataTx]:
        """Commits on normal exit, rolls back on an exception (which propagates)."""
        with self.engine.begin() as connection:
            yield SqlMetadataTx(connection)

    @contextmanager
    def reading(self) -> Iterator[SqlMetadataTx]:
        """For reads only: PostgreSQL runs each statement on its own (autocommit: no BEGIN and
        COMMIT round trips), SQLite takes a deferred, shared transaction (no write lock)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield SqlMetadataTx(conn)
        else:
            connection = self.engine.connect().execution_options(**{READ_ONLY: True})
            with connection as conn, conn.begin():
                yield SqlMetadataTx(conn)

    def check(self) -> None:
        """Raises ``RuntimeError`` if the database is unreachable or not at the head revision."""
        try:
            revision = current_revision(self.engine)
        except Exception as error:
            where = self.engine.url.render_as_string(hide_password=True)
            raise RuntimeError(f"metadata database unreachable at {where}: {error}") from error
        head = head_revision()
        if revision != head:
            raise RuntimeError(
                f"metadata database schema is at revision {revision!r}, expected {head!r}: "
                "run `recsys backend migrate` (serving.social.storage.sql.migrate)"
            )

    def close(self) -> None:
        """Closes the engine's pooled connections."""
        self.engine.dispose()
