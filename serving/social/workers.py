"""The background side of the backend: the outbox relay, the bus consumers and the story
cleanup job.

==============  ==================  ==============================================
consumer group  streams             handler
==============  ==================  ==============================================
``fanout``      ``posts, graph``    :meth:`FanoutService.handle`
``media``       ``media``           :meth:`MediaService.handle`
``stories``     ``stories``         :meth:`StoryService.handle`
==============  ==================  ==============================================

Delivery is at-least-once: a message is acked only after its handler returned. A consumer that
dies holding messages leaves them pending; after ``reclaim_idle_ms`` another consumer reclaims
them (``deliveries`` counts the hand-outs). A message whose handler keeps failing is given up
after ``max_deliveries``: it is logged, the group's ``on_dead`` hook runs (media marks the item
failed) and it is acked, so one poison message cannot block a stream. Handlers are idempotent,
so re-delivery never duplicates anything.

:meth:`Workers.drain` runs everything synchronously until no work is left (tests, the demo);
:meth:`Workers.start` runs it in daemon threads (``recsys backend serve`` and
``recsys backend worker``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from serving.social.backend import Backend
from serving.social.domain import Event, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerGroup:
    name: str
    streams: tuple[str, ...]
    handle: Callable[[Event], None]
    on_dead: Callable[[Event, str], None] | None = None


def consumer_groups(backend: Backend) -> list[ConsumerGroup]:
    def media_dead(event: Event, reason: str) -> None:
        if "media_id" in event.payload:
            backend.media.fail(int(event.payload["media_id"]), f"processing kept failing: {reason}")

    return [
        ConsumerGroup("fanout", ("posts", "graph"), backend.fanout.handle),
        ConsumerGroup("media", ("media",), backend.media.handle, media_dead),
        ConsumerGroup("stories", ("stories",), backend.stories.handle),
    ]


class Workers:
    def __init__(
        self,
        backend: Backend,
        *,
        consumer: str | None = None,
        batch: int = 100,
        reclaim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
    ) -> None:
        self.backend = backend
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.reclaim_idle_ms = reclaim_idle_ms
        self.max_deliveries = max_deliveries
        self.groups = consumer_groups(backend)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for group in self.groups:
            for stream in group.streams:
                backend.storage.bus.ensure_group(stream, group.name)

    # --- single steps -------------------------------------------------------------------------

    def relay(self) -> int:
        """Publishes committed outbox events to the bus; returns how many."""
        bus = self.backend.storage.bus
        return self.backend.storage.metadata.relay_outbox(bus.publish, limit=500)

    def consume(
        self,
        group: ConsumerGroup,
        stream: str,
        *,
        block_ms: int = 0,
        reclaim_idle_ms: int | None = None,
    ) -> int:
        """Handles one batch of ``stream`` for ``group``: first messages reclaimed from dead
        consumers, then new ones. Returns how many messages it settled (acked)."""
        bus = self.backend.storage.bus
        idle = self.reclaim_idle_ms if reclaim_idle_ms is None else reclaim_idle_ms
        messages = bus.reclaim(stream, group.name, self.consumer, idle, self.batch)
        if not messages:
            messages = bus.read(stream, group.name, self.consumer, self.batch, block_ms=block_ms)
        done: list[str] = []
        for message in messages:
            if self._handle(group, message):
                done.append(message.id)
        if done:
            bus.ack(stream, group.name, done)
        return len(done)

    def _handle(self, group: ConsumerGroup, message: Message) -> bool:
        try:
            group.handle(message.event)
            return True
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            if message.deliveries >= self.max_deliveries:
                log.error(
                    "%s: giving up on %s %s after %d deliveries: %s",
                    group.name,
                    message.stream,
                    message.id,
                    message.deliveries,
                    reason,
                )
                if group.on_dead is not None:
                    group.on_dead(message.event, reason)
                return True
            log.warning(
                "%s: %s %s failed (delivery %d, will retry): %s",
                group.name,
                message.stream,
                message.id,
                message.deliveries,
                reason,
            )
            return False

    def cleanup(self) -> int:
        """The periodic job: expired stories (and the tray repair after a Redis restart), old
        idempotency keys; returns how many items it cleaned."""
        return self.backend.stories.cleanup() + self.backend.accounts.purge_idempotency_keys()

    # --- synchronous --------------------------------------------------------------------------

    def drain(self, max_rounds: int = 10_000) -> int:
        """Relays and consumes until nothing is left (pending messages of dead consumers are
        reclaimed at once); returns the number of messages handled."""
        handled = 0
        for _ in range(max_rounds):
            progress = self.relay()
            for group in self.groups:
                for stream in group.streams:
                    n = self.consume(group, stream, reclaim_idle_ms=0)
                    handled += n
                    progress += n
            if progress == 0 and not self._pending():
                return handled
        raise RuntimeError(f"workers: still busy after {max_rounds} rounds")

    def _pending(self) -> int:
        bus = self.backend.storage.bus
        return sum(bus.pending_count(s, g.name) for g in self.groups for s in g.streams)

    # --- threads ------------------------------------------------------------------------------

    def start(self, poll_interval_s: float | None = None) -> None:
        """Runs the relay, one loop per (group, stream) and the cleanup job in daemon threads."""
        poll = poll_interval_s or self.backend.settings.server.poll_interval_s
        self._stop.clear()
        self._spawn("relay", lambda: self.relay(), poll)
        for group in self.groups:
            for stream in group.streams:
                self._spawn(
                    f"{group.name}:{stream}",
                    lambda g=group, s=stream: self.consume(g, s, block_ms=int(poll * 1000)),
                    0.0,
                )
        self._spawn(
            "stories-cleanup", self.cleanup, self.backend.settings.stories.cleanup_interval_s
        )

    def _spawn(self, name: str, step: Callable[[], int], idle_sleep_s: float) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    did = step()
                except Exception:
                    log.exception("worker %s failed; retrying", name)
                    did = 0
                if not did:
                    self._stop.wait(max(idle_sleep_s, 0.01))

        thread = threading.Thread(target=loop, name=f"worker-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
