"""The job's entry point: ``key=value`` options and the backend's settings (Hydra overrides of
``recsys backend``, on ``configs/social.yaml``).

    python -m pipelines.social_traffic [backend overrides] [users=60] [rounds=6] [seed=0]
        [prefix=user]

The embedded default writes into ``data/backend`` (``backend.data_dir=...`` moves it), the
folder that ``recsys backend serve`` and ``python -m pipelines.social_events`` read;
``backend=production`` drives PostgreSQL + Redis. The simulated clock starts far enough in the
past to end at the present. ``prefix`` names the users (``user000`` ...): a second run on the
same backend needs another prefix.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from pipelines.job_options import split_options
from pipelines.social_traffic.traffic import TrafficSummary, simulate

_OPTIONS: dict[str, type] = {"users": int, "rounds": int, "seed": int, "prefix": str}
USAGE = "\n\n".join(__doc__.split("\n\n")[1:3])


def main(argv: Sequence[str] | None = None) -> TrafficSummary | None:
    """``python -m pipelines.social_traffic [backend overrides] [options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return None
    options, overrides = split_options(args, _OPTIONS, "pipelines.social_traffic")
    from serving.social.backend import open_backend
    from serving.social.cli import load_settings
    from serving.social.clock import ManualClock
    from serving.social.domain import BackendError

    settings, _ = load_settings(overrides)
    users, rounds = options.get("users", 60), options.get("rounds", 6)
    clock = ManualClock(time.time() - 6_000 - users * rounds * 40)
    backend = open_backend(settings, clock)
    try:
        summary = simulate(backend, clock, **options)
    except (ValueError, BackendError) as error:  # e.g. users of this prefix exist already
        raise SystemExit(f"pipelines.social_traffic: {error}") from None
    finally:
        backend.close()
    print(summary.line(), flush=True)
    return summary
