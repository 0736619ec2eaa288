"""``recsys backend ...``: the social backend's commands (found by ``recsys`` through the entry
point group ``recsys.commands``, so the library never imports this package).

    recsys backend serve [overrides]     the HTTP API (+ workers as threads by default)
    recsys backend worker [overrides]    relay + fanout/media/stories consumers + cleanup
    recsys backend migrate [overrides]   upgrade the metadata schema to the latest revision
    recsys backend demo [overrides]      the scripted scenario against a live server

Overrides are Hydra's, on the config ``configs/social.yaml`` and its group ``backend/``:
``backend=production``, ``backend.server.port=8080``, ``backend.fanout.threshold=1000`` ...
``-v`` / ``--verbose`` (``recsys -v backend ...`` passes it on) keeps alembic's INFO lines,
dropped otherwise.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.social.settings import BackendSettings, settings_from_mapping

USAGE = __doc__.split("\n\n", 1)[1]
COMMANDS = ("serve", "worker", "migrate", "demo")
VERBOSE = ("-v", "--verbose")


def quiet_alembic(verbose: bool) -> None:
    """Alembic's INFO lines (its plugins' set-up, the migration context) at start-up are
    dropped unless ``verbose``: the ``alembic`` logger at WARNING (NOTSET, the root's level,
    when verbose). Its warnings and errors always show."""
    logging.getLogger("alembic").setLevel(logging.NOTSET if verbose else logging.WARNING)


def config_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "configs"
    if not (path / "social.yaml").is_file():
        raise SystemExit(
            f"recsys backend: {path / 'social.yaml'} not found; install from a source checkout "
            "(scripts/install.sh keeps configs/ beside the package)"
        )
    return path


def load_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The composed ``social`` config as a plain dict (Hydra compose, no output folders)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="social", overrides=list(overrides))
    except HydraException as error:
        raise SystemExit(f"recsys backend: bad override: {error}") from None
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def load_settings(overrides: Sequence[str] = ()) -> tuple[BackendSettings, dict[str, Any]]:
    cfg = load_config(overrides)
    try:
        return settings_from_mapping(cfg.get("backend") or {}), cfg
    except (ValueError, TypeError) as error:
        raise SystemExit(f"recsys backend: {error}") from None


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def serve(settings: BackendSettings, log_level: str) -> None:
    import uvicorn

    from serving.social.api import create_app

    print(
        f"recsys backend: serving on http://{settings.server.host}:{settings.server.port} "
        f"(storage={settings.storage}, docs at /docs)",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_level=log_level,
        # The API reads X-Forwarded-For itself, from server.trusted_proxies only (uvicorn's
        # default would believe any local peer, so a rotating header bypassed the login limit).
        proxy_headers=False,
    )


def worker(settings: BackendSettings) -> None:
    from serving.social.backend import open_backend
    from serving.social.workers import Workers

    backend = open_backend(settings)
    workers = Workers(backend)
    workers.start()
    print(
        f"recsys backend: worker {workers.consumer} running (storage={settings.storage})",
        flush=True,
    )
    try:
        _wait_for_signal()
    finally:
        workers.stop()
        backend.close()


def migrate_command(settings: BackendSettings) -> None:
    from serving.social.storage.factory import metadata_url
    from serving.social.storage.sql import make_engine, migrate

    engine = make_engine(metadata_url(settings))
    try:
        revision = migrate(engine)
    finally:
        engine.dispose()
    print(f"recsys backend: {settings.storage} metadata schema at revision {revision}")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    verbose = any(a in VERBOSE for a in args)
    command, overrides = args[0], [a for a in args[1:] if a not in VERBOSE]
    if command not in COMMANDS:
        raise SystemExit(f"recsys backend: unknown command {command!r}; known: {list(COMMANDS)}")
    if "--cfg" in overrides:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(load_config([o for o in overrides if o != "--cfg"])))
        return
    settings, cfg = load_settings(overrides)
    log_level = str(cfg.get("log_level", "info"))
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_alembic(verbose)
    try:
        if command == "serve":
            serve(settings, log_level)
        elif command == "worker":
            worker(settings)
        elif command == "migrate":
            migrate_command(settings)
        else:
            from serving.social.demo import demo_command

            demo_command(settings, cfg)
    except RuntimeError as error:  # unreachable servers, schema behind: say what, no traceback
        raise SystemExit(f"recsys backend {command}: {error}") from None
