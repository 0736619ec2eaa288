"""``recsys serve serve.run_dir=RUN [serve.port=8500] [overrides]``: the inference service.

Found by ``recsys`` through the entry point group ``recsys.commands`` (the library never
imports this package). Overrides are Hydra's, on ``configs/serve.yaml``:
``serve.retrieval_run_dir=RUN2`` (a ranker and a two-tower together), ``serve.threads=2``,
``serve.reload_interval_s=0`` ... The exports are loaded (and checked) before the server
starts listening: one that does not match its manifest refuses to start. Uvicorn runs with
the ``httptools`` HTTP parser and the ``uvloop`` event loop where they are installed
(``h11`` and asyncio otherwise), without an access log.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.export.manifest import ManifestError
from serving.inference.settings import ServeSettings, serve_settings

USAGE = "usage: recsys serve serve.run_dir=RUN [serve.retrieval_run_dir=RUN2] [serve.port=8500]"


def config_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "configs"
    if not (path / "serve.yaml").is_file():
        raise SystemExit(
            f"recsys serve: {path / 'serve.yaml'} not found; install from a source checkout "
            "(scripts/install.sh keeps configs/ beside the package)"
        )
    return path


def load_settings(overrides: Sequence[str] = ()) -> ServeSettings:
    """The composed ``serve`` config as :class:`ServeSettings` (Hydra compose, no outputs)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="serve", overrides=list(overrides))
    except HydraException as error:
        raise SystemExit(f"recsys serve: bad override: {error}") from None
    node: Any = OmegaConf.to_container(cfg, resolve=True)
    try:
        return serve_settings(node.get("serve") or {})
    except (TypeError, ValueError) as error:
        raise SystemExit(f"recsys serve: {error}") from None


def server_options() -> dict[str, str]:
    """Uvicorn's ``http`` and ``loop`` implementations: the C ones where installed."""

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    return {
        "http": "httptools" if have("httptools") else "h11",
        "loop": "uvloop" if have("uvloop") else "asyncio",
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``recsys serve``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(f"{USAGE}\n\n{__doc__}")
        return
    if any(a in ("-v", "--verbose") for a in args):  # `recsys -v serve`: uvicorn's lines too
        args = [a for a in args if a not in ("-v", "--verbose")]
        if not any(a.startswith("serve.log_level=") for a in args):
            args.append("serve.log_level=info")
    settings = load_settings(args)
    import uvicorn

    from serving.inference.app import create_app
    from serving.inference.service import InferenceService

    try:
        service = InferenceService(settings)
    except (ManifestError, ValueError) as error:
        raise SystemExit(f"recsys serve: {error}") from None

    class AnnouncingServer(uvicorn.Server):
        """Uvicorn's server that prints :func:`headline` once it listens (after uvicorn's own
        start-up lines, so the headline is the last thing printed while it serves)."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound = [s.getsockname()[1] for srv in self.servers for s in srv.sockets or ()]
                port = bound[0] if bound else settings.port
                for line in headline(service, settings.host, port):
                    print(line, flush=True)

    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        **server_options(),
    )
    AnnouncingServer(config).run()


def headline(service: Any, host: str, port: int) -> list[str]:
    """The lines ``recsys serve`` ends its start-up with: the models loaded (kind, class,
    export folder) and the URL it serves on."""
    models = service.models
    loaded = [
        f"{name} {m.manifest.model.get('class')} ({m.export_dir})"
        for name, m in (("ranker", models.ranker), ("retriever", models.retriever))
        if m is not None
    ]
    return [
        f"recsys serve: models loaded: {', '.join(loaded)}",
        f"recsys serve: serving on http://{host}:{port} (Ctrl-C to stop)",
    ]
