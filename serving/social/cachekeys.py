"""Names of the cache entries services share through the
:class:`~serving.social.storage.interfaces.KeyValueCache` (services never import each other, so
the writer that invalidates an entry and the reader that fills it agree here)."""

from __future__ import annotations

#: Seconds a reader's cached follow graph (followees, pulled celebrities, blocks) lives. Graph
#: writes delete it at once; a followee crossing the celebrity threshold is seen within this.
GRAPH_TTL_S = 60.0


def graph_key(user_id: int) -> str:
    """The feed's cached follow graph of ``user_id``.

    >>> graph_key(7)
    'graph:7'
    """
    return f"graph:{user_id}"
