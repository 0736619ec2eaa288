"""An embedded backend on a manual clock for the pipeline and closed-loop tests, and the traffic
job's population (:func:`pipelines.social_traffic.traffic.simulate`) to fill it."""

from __future__ import annotations

from pathlib import Path

from pipelines.social_traffic.traffic import PASSWORD, simulate
from serving.social.backend import Backend, open_backend
from serving.social.clock import ManualClock
from serving.social.ranking import RankingClient
from serving.social.settings import settings_from_mapping

__all__ = ["PASSWORD", "T0", "make_backend", "simulate"]

T0 = 1_767_225_600


def make_backend(
    folder: Path, clock: ManualClock | None = None, ranking: RankingClient | None = None
) -> tuple[Backend, ManualClock]:
    """An embedded backend in ``folder`` (rate limits off) on a manual clock at ``T0``."""
    clock = clock or ManualClock(T0)
    settings = settings_from_mapping({"data_dir": str(folder), "rate_limits": {"enabled": False}})
    return open_backend(settings, clock, ranking), clock
