"""The :class:`~serving.social.storage.interfaces.MetadataStore` on SQLAlchemy Core, one module
per aggregate: :mod:`.users` (users, tokens), :mod:`.graph` (follows, blocks), :mod:`.posts`
(posts, media), :mod:`.stories` (stories, views), :mod:`.interactions` (likes, saves,
comments), :mod:`.events` (event log, outbox); :mod:`.base` holds the connection, the shared
statement helpers and the one row-to-record mapping; :mod:`.store` composes the transaction
class from the parts and opens it.

May import: :mod:`serving.social.domain`, :mod:`serving.social.storage.interfaces` (argument
types), and the sibling SQL modules (``schema``, ``engine``, ``_util``); never services,
the API or Redis.

>>> from serving.social.storage.sql.metadata import SqlMetadataStore, SqlMetadataTx
"""

from __future__ import annotations

from serving.social.storage.sql.metadata.store import SqlMetadataStore, SqlMetadataTx

__all__ = ["SqlMetadataStore", "SqlMetadataTx"]
