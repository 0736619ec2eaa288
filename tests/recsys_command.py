"""The ``recsys`` command run in process by the tests (a fresh Hydra around each call), and the
small synthetic social data set that the command tests train on."""

from __future__ import annotations

from hydra.core.global_hydra import GlobalHydra

from recsys.cli.main import main

__all__ = ["SOCIAL_600", "run_recsys"]

#: Overrides of the synthetic generator: 600 users, 30k impressions (seconds to generate).
SOCIAL_600 = [
    "data.source.config.n_users=600",
    "data.source.config.n_authors=60",
    "data.source.config.n_posts=1500",
    "data.source.config.n_impressions=30000",
    "data.source.config.chunk_rows=10000",
]


def run_recsys(args: list[str]) -> None:
    """``recsys ARGS`` in this process."""
    GlobalHydra.instance().clear()
    try:
        main(args)
    finally:
        GlobalHydra.instance().clear()
