"""What every benchmark prints about the machine it ran on (shared by the scripts, which run
standalone: each puts this folder on ``sys.path`` before importing it)."""

from __future__ import annotations

import platform
import re
from pathlib import Path

__all__ = ["cpu_model"]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        found = None
    return found.group(1).strip() if found else (platform.processor() or platform.machine())
