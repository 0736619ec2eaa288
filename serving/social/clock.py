"""Time for the backend: the system clock in service, a manual one in tests (story expiry at the
exact boundary, rate-limit refills, inactive users) without sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told; thread-safe.

    >>> c = ManualClock(1_000.0); c.advance(86_400); c.now()
    87400.0
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def set(self, t: float) -> None:
        with self._lock:
            self._t = float(t)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += float(seconds)
