"""What the console shows: our lines, not the libraries' chatter.

By default :func:`quiet_libraries` drops the known lines of the libraries we compose that say
nothing to a user of ``recsys`` (MLflow's database creation and migration INFO lines, torch's
``is_fx_tracing`` deprecation warning, TorchRec's ``LOCAL_WORLD_SIZE`` / ``TopologyFactory``
warnings on one process, its planner's FutureWarning, Ray's token notice at each start) and
keeps every other warning. ``quiet_libraries(verbose=True)`` (``recsys -v ...``) lets
everything through and turns the root logger up to INFO.

The filter is attached to the loggers that emit these lines (a logger's own filters apply to
the records it creates, whatever handlers the application or Hydra configures later), so it
survives MLflow replacing its handlers at import and Hydra's ``dictConfig``.

    >>> quiet_libraries()
    >>> import logging
    >>> logging.getLogger("torch.fx._symbolic_trace").filters[-1].verbose
    False
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["NOISE", "NOISY_WARNINGS", "LibraryNoise", "quiet_libraries"]

#: (logger name, message prefix, highest level dropped) of the lines we drop by default.
NOISE: tuple[tuple[str, str, int], ...] = (
    ("mlflow.store.db.utils", "", logging.INFO),  # "Creating initial MLflow database tables..."
    ("alembic.runtime.migration", "", logging.INFO),
    ("torch.fx._symbolic_trace", "is_fx_tracing will return true", logging.WARNING),
    ("root", "Could not determine LOCAL_WORLD_SIZE", logging.WARNING),
    ("torchrec.distributed.comm", "TORCHREC_RESOLVED_POD_SIZE not set", logging.WARNING),
    ("torchrec.distributed.planner.types", "TopologyFactory:", logging.WARNING),
    ("torchrec.distributed.planner.types", "HardwareConfig", logging.WARNING),
    ("torchrec.distributed.planner.types", "The topology was constructed", logging.WARNING),
    ("torchrec.distributed.planner.storage_reservations", "There is a known", logging.WARNING),
    # Ray's notice at every local start that it wrote ~/.ray/auth_token
    (
        "ray._private.authentication.authentication_token_setup",
        "Token authentication is enabled",
        logging.WARNING,
    ),
)
#: Python warnings of these modules (regex) and categories, dropped likewise: TorchRec's
#: deprecation notices about its own planner options.
NOISY_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (("torchrec", FutureWarning),)


class LibraryNoise(logging.Filter):
    """Drops the records of :data:`NOISE` unless ``verbose``."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        message = record.getMessage()
        for name, prefix, level in NOISE:
            if record.name == name and record.levelno <= level and message.startswith(prefix):
                return False
        return True


def quiet_libraries(verbose: bool = False) -> None:
    """Installs (or updates) :class:`LibraryNoise` on the loggers of :data:`NOISE`; with
    ``verbose`` nothing is dropped and the root logger shows INFO. Idempotent."""
    for name in sorted({n for n, _, _ in NOISE}):
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        mine = [f for f in logger.filters if isinstance(f, LibraryNoise)]
        if mine:
            mine[0].verbose = verbose
        else:
            logger.addFilter(LibraryNoise(verbose))
    for module, category in NOISY_WARNINGS:
        action = "default" if verbose else "ignore"
        warnings.filterwarnings(action, category=category, module=module)
    if verbose:
        logging.getLogger().setLevel(logging.INFO)
