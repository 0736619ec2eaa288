"""The job's entry point: ``key=value`` arguments, the backend's settings, its metadata store.

    python -m pipelines.social_events [backend overrides] out_dir=DIR [long_dwell_ms=5000]
        [attribution_window_s=3600] [after_seq=0] [rows_per_file=1000000] [max_lateness_s=300]
        [history=true]

Backend overrides are those of ``recsys backend`` (Hydra, on ``configs/social.yaml``):
``backend=production``, ``backend.data_dir=...``. ``history=true`` (the default) also writes
the follow log and the rows' posts (``follows.parquet``, ``posts.parquet``: the feature store's
input, :mod:`pipelines.feature_sources`). Train on the export with::

    recsys train experiment=multitask_social data=social_events data.path=DIR
    recsys train experiment=multitask_social_tiny data=social_events data.path=DIR

The backend is reached through its public interfaces only: ``serving.social.cli.load_settings``
for the settings and ``serving.social.storage.factory.open_metadata_store`` for the store (both
imported when the job runs, so importing the package stays light).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.job_options import split_options
from pipelines.social_events.export import ExportSummary, export_events
from pipelines.social_events.writer import ExportError
from serving.social.storage.interfaces import MetadataStore

if TYPE_CHECKING:
    from serving.social.settings import BackendSettings

_OPTIONS: dict[str, type] = {
    "out_dir": str,
    "long_dwell_ms": int,
    "attribution_window_s": float,
    "after_seq": int,
    "rows_per_file": int,
    "max_lateness_s": float,
    "history": str,
}
USAGE = "\n\n".join(__doc__.split("\n\n")[1:4])


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Splits ``key=value`` arguments into export options and backend (Hydra) overrides."""
    options, overrides = split_options(argv, _OPTIONS, "pipelines.social_events")
    history = str(options.get("history", "true")).lower()
    if history not in ("true", "false"):
        raise SystemExit(f"pipelines.social_events: history must be true or false, got {history!r}")
    options["history"] = history == "true"
    if not options.get("out_dir"):
        raise SystemExit(f"pipelines.social_events: out_dir=DIR is required\n{USAGE}")
    return options, overrides


def open_metadata(settings: BackendSettings) -> tuple[MetadataStore, dict[str, Any]]:
    """The metadata store of ``settings`` opened read-only in spirit: no migration, no Redis;
    and facts about it for the manifest.

    Raises ``SystemExit`` when the embedded database does not exist or the store is unreachable
    or behind the latest schema revision.
    """
    from serving.social.storage.factory import open_metadata_store

    facts: dict[str, Any] = {"backend": "serving.social", "storage": settings.storage}
    if settings.storage == "embedded":
        path = Path(settings.resolved_sqlite_path()).expanduser().resolve()
        if not path.is_file():
            raise SystemExit(
                f"pipelines.social_events: no embedded backend database at {path} "
                "(set backend.data_dir or backend.sqlite_path)"
            )
        facts["sqlite_path"] = str(path)
    store = open_metadata_store(settings)
    try:
        store.check()
    except Exception as error:
        store.close()
        raise SystemExit(f"pipelines.social_events: {error}") from None
    return store, facts


def main(argv: Sequence[str] | None = None) -> ExportSummary | None:
    """``python -m pipelines.social_events [backend overrides] out_dir=DIR [options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return None
    options, overrides = parse_args(args)
    from serving.social.cli import load_settings

    settings, _ = load_settings(overrides)
    store, facts = open_metadata(settings)
    try:
        summary = export_events(store, options.pop("out_dir"), source=facts, **options)
    except ExportError as error:
        raise SystemExit(f"pipelines.social_events: {error}") from None
    finally:
        store.close()
    print("\n".join(summary.lines()), flush=True)
    return summary
