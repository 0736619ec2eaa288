"""The event bus on Redis Streams with consumer groups (the production :class:`EventBus`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from serving.social.domain import Event, Message, event_from_json, event_to_json
from serving.social.storage.checks import at_least_one
from serving.social.storage.redis.client import check_prefix, guarded, namespace, socket_timeout_s

log = logging.getLogger(__name__)

#: The stream entry field holding the event's JSON.
FIELD = b"e"

#: How much shorter than the socket timeout a blocking read is made, so its empty reply
#: arrives before the client gives up on the socket.
BLOCK_MARGIN_MS = 1_000

#: Upper bound on XAUTOCLAIM calls in one :meth:`RedisEventBus.reclaim` (each scans up to
#: ten times ``count`` pending entries).
MAX_RECLAIM_SCANS = 10


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@guarded
class RedisEventBus:
    """Streams ``{prefix}bus:{stream}`` (XADD, trimmed to about ``maxlen`` entries) read through
    consumer groups (XREADGROUP / XACK / XAUTOCLAIM). Each entry has one field ``e``: the
    event's :func:`~serving.social.domain.event_to_json`.

    Malformed entries (no ``e`` field, or JSON that :func:`event_from_json` rejects) are never
    handed to consumers: they are logged at ERROR level with the stream, group and id, and
    acked at once, so one bad entry cannot wedge a consumer that would otherwise re-read it
    forever. :meth:`read` auto-creates a missing group (as :meth:`ensure_group` would), so a
    stream lost in a Redis restart does not leave workers failing.
    """

    def __init__(self, client: redis.Redis, prefix: str, maxlen: int = 1_000_000) -> None:
        self._client = client
        self.prefix = check_prefix(prefix)
        self.maxlen = at_least_one(maxlen, "maxlen")
        self._bus = namespace(prefix, "bus")

    def key(self, stream: str) -> str:
        """The Redis key of ``stream``."""
        return f"{self._bus}{stream}"

    # --- writing -------------------------------------------------------------------------------

    def publish(self, event: Event) -> str:
        """Appends ``event`` to stream ``event.stream``; returns the entry id (``ms-seq``)."""
        entry_id = self._client.xadd(
            self.key(event.stream),
            {FIELD: event_to_json(event)},
            maxlen=self.maxlen,
            approximate=True,
        )
        return _text(entry_id)

    def ensure_group(self, stream: str, group: str) -> None:
        """Creates ``group`` reading from the stream's start (and the stream) if missing."""
        try:
            self._client.xgroup_create(self.key(stream), group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    # --- reading -------------------------------------------------------------------------------

    def _block_ms(self, block_ms: int) -> int | None:
        """The BLOCK argument: None (do not block) for 0, else ``block_ms`` shortened to stay
        below the client's socket timeout."""
        if block_ms <= 0:
            return None
        timeout = socket_timeout_s(self._client)
        if timeout is not None:
            block_ms = min(block_ms, max(1, int(timeout * 1000) - BLOCK_MARGIN_MS))
        return block_ms

    def _decode(
        self, stream: str, group: str, entries: list[Any], deliveries: dict[str, int] | None = None
    ) -> list[Message]:
        """Messages from ``[(id, fields), ...]``; malformed entries are logged and acked."""
        messages: list[Message] = []
        bad: list[str] = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            try:
                if not fields or FIELD not in fields:
                    raise ValueError(f"entry has no {FIELD!r} field: {fields!r:.200}")
                event = event_from_json(fields[FIELD])
            except (ValueError, TypeError, UnicodeDecodeError) as error:
                log.error(
                    "bus: dropping malformed entry %s on stream %r (group %r), acked so it is "
                    "not redelivered: %s",
                    entry_id,
                    stream,
                    group,
                    error,
                )
                bad.append(entry_id)
                continue
            # A reclaimed entry acked by someone else in between has no XPENDING row: it was
            # still handed out at least twice.
            count = 1 if deliveries is None else deliveries.get(entry_id, 2)
            messages.append(Message(stream=stream, id=entry_id, event=event, deliveries=count))
        if bad:
            self.ack(stream, group, bad)
        return messages

    @staticmethod
    def _entries(reply: Any) -> list[Any]:
        """The ``[(id, fields), ...]`` of the one stream in an XREADGROUP reply (RESP2 or 3)."""
        if not reply:
            return []
        if isinstance(reply, dict):
            # RESP3: {stream: [entries]}
            return [entry for wrapped in reply.values() for entry in wrapped[0]]
        return [entry for _, entries in reply for entry in entries]

    def read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int = 0
    ) -> list[Message]:
        """Up to ``count`` new messages for ``group``, now pending on ``consumer`` until acked;
        waits up to ``block_ms`` (shortened below the socket timeout) when none are there."""
        if count <= 0:
            return []
        key = self.key(stream)
        block = self._block_ms(block_ms)
        try:
            reply = self._client.xreadgroup(group, consumer, {key: ">"}, count=count, block=block)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self.ensure_group(stream, group)
            reply = self._client.xreadgroup(group, consumer, {key: ">"}, count=count, block=block)
        return self._decode(stream, group, self._entries(reply))

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """Acknowledges ``ids``: they leave the group's pending list."""
        if ids:
            self._client.xack(self.key(stream), group, *ids)

    def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Message]:
        """Up to ``count`` pending messages idle for at least ``min_idle_ms``, now pending on
        ``consumer``. ``deliveries`` is the group's delivery counter after the claim (so >= 2),
        read with the extended XPENDING. Pending ids whose entries were deleted from the stream
        (trimmed) are acked away."""
        if count <= 0:
            return []
        key = self.key(stream)
        claimed: list[Any] = []
        deleted: list[str] = []
        start = "0-0"
        try:
            for _ in range(MAX_RECLAIM_SCANS):
                reply = self._client.xautoclaim(
                    key, group, consumer, min_idle_ms, start_id=start, count=count - len(claimed)
                )
                start = _text(reply[0])
                claimed.extend(reply[1])
                if len(reply) > 2 and reply[2]:
                    deleted.extend(_text(i) for i in reply[2])
                if start == "0-0" or len(claimed) >= count:
                    break
        except redis.ResponseError as error:
            if "NOGROUP" in str(error):
                return []
            raise
        if deleted:
            self.ack(stream, group, deleted)
        if not claimed:
            return []
        pipe = self._client.pipeline(transaction=False)
        for raw_id, _ in claimed:
            pipe.xpending_range(key, group, min=raw_id, max=raw_id, count=1)
        deliveries: dict[str, int] = {}
        for rows in pipe.execute():
            for row in rows:
                deliveries[_text(row["message_id"])] = int(row["times_delivered"])
        return self._decode(stream, group, claimed, deliveries)

    def pending_count(self, stream: str, group: str) -> int:
        """Messages delivered to ``group`` and not yet acked (0 when the stream or group does
        not exist)."""
        try:
            summary = self._client.xpending(self.key(stream), group)
        except redis.ResponseError as error:
            if "NOGROUP" in str(error) or "no such key" in str(error).lower():
                return 0
            raise
        return int(summary["pending"]) if summary else 0

    def close(self) -> None:
        """Closes the client and disconnects its connection pool (shared with the other Redis
        adapters built on the same client: they reconnect on their next command)."""
        self._client.close()
        self._client.connection_pool.disconnect()
