"""Progress of long work (data preparation, training, index builds, benchmarks) with its rate
and the time left.

On a terminal it is a tqdm bar. Elsewhere (CI logs, files, notebooks' captured output) it is
one log line per update, at most every ``interval`` seconds, through the ``recsys.progress``
logger, e.g.::

    epoch 1/3: 1,200/5,000 batches (24%), 61,400 examples/s, 0:00:42 left, loss 0.4513

    >>> p = Progress(10, "demo", unit="rows", enabled=False)
    >>> p.update(4); p.done
    4
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any

__all__ = ["Progress", "format_line"]

log = logging.getLogger("recsys.progress")


def format_line(
    desc: str,
    done: float,
    total: float | None,
    unit: str,
    elapsed: float,
    *,
    fresh: float | None = None,
    rate_unit: str | None = None,
    rate_count: float | None = None,
    postfix: dict[str, Any] | None = None,
) -> str:
    """One progress line: ``desc: done/total unit (pct), rate rate_unit/s, h:mm:ss left, k v``.

    ``fresh`` (default ``done``) units were done in the ``elapsed`` seconds (the rest before:
    a resumed epoch); ``rate_count`` (default ``fresh``) of ``rate_unit`` over ``elapsed`` is
    the rate; the time left assumes the pace of the fresh units.

    >>> format_line("epoch 1/1", 50, 200, "batches", 10.0)
    'epoch 1/1: 50/200 batches (25%), 5 batches/s, 0:00:30 left'
    """
    fresh = done if fresh is None else fresh
    parts = [f"{desc}: {done:,.0f}" + (f"/{total:,.0f}" if total else "") + f" {unit}"]
    if total:
        parts[0] += f" ({100.0 * done / total:.0f}%)"
    if elapsed > 0:
        count = fresh if rate_count is None else rate_count
        parts.append(f"{count / elapsed:,.0f} {rate_unit or unit}/s")
        if total and fresh > 0:
            left = max(total - done, 0) * elapsed / fresh
            parts.append(f"{timedelta(seconds=round(left))} left")
    text = ", ".join(parts)
    if postfix:
        text += ", " + ", ".join(f"{k} {v}" for k, v in postfix.items())
    return text


class Progress:
    """Progress over ``total`` units (``None``: unknown).

    Args:
        enabled: ``None`` chooses a tqdm bar when stderr is a terminal and log lines otherwise;
            ``True`` forces the bar, ``False`` shows nothing.
        interval: seconds between two log lines (log mode).
        rate_unit: what the rate counts, when it is not ``unit`` (``update(n, count=...)``
            adds to it), e.g. batches done but examples per second.
        initial: units already done (a resumed epoch).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        enabled: bool | None = None,
        interval: float = 10.0,
        rate_unit: str | None = None,
        initial: int = 0,
    ) -> None:
        self.total, self.desc, self.unit, self.rate_unit = total, desc, unit, rate_unit
        self.done, self._initial, self.count, self.interval = initial, initial, 0.0, interval
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.perf_counter()
        self._lines = 0
        self._bar: Any = None
        terminal = sys.stderr.isatty()
        self._log = enabled is None and not terminal
        if enabled or (enabled is None and terminal):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, mininterval=1.0, leave=False
            )

    def update(self, n: int = 1, count: float | None = None) -> None:
        """``n`` more units done (and ``count`` more of ``rate_unit``)."""
        self.done += n
        self.count += n if count is None else count
        if self._bar is not None:
            self._bar.update(n)
        elif self._log:
            now = time.perf_counter()
            if now - self._last >= self.interval:
                self._last = now
                self._lines += 1
                log.info(self.line())

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the rate (e.g. the loss, the last validation metric)."""
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=False)

    def line(self) -> str:
        """The current progress as one line (:func:`format_line`)."""
        return format_line(
            self.desc,
            self.done,
            self.total,
            self.unit,
            time.perf_counter() - self._start,
            fresh=self.done - self._initial,
            rate_unit=self.rate_unit,
            rate_count=self.count,
            postfix=self.postfix,
        )

    def close(self) -> None:
        """Closes the bar; in log mode a last line if any line was written (long work)."""
        if self._bar is not None:
            self._bar.close()
        elif self._log and self._lines:
            log.info(self.line())
