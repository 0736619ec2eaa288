"""Settings of ``recsys serve``: the exports to load and how the service runs them.

Built from the resolved ``serve`` node of ``configs/serve.yaml`` (or any mapping) by
:func:`serve_settings`, which names a misspelled key or a bad value. ``run_dir`` and
``retrieval_run_dir`` each take a run folder (its ``export/`` is used) or an export folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.export.manifest import MANIFEST
from serving.inference.features import feature_settings

__all__ = ["ServeSettings", "export_folder", "serve_settings"]


@dataclass(frozen=True)
class ServeSettings:
    """What ``recsys serve`` loads and how it answers.

    Attributes:
        run_dir: a ranker or two-tower run (or its export folder).
        retrieval_run_dir: a second export, so that a ranker and a two-tower serve together
            (``/recommend``); either order.
        host, port: where the HTTP server listens.
        threads: ONNX Runtime intra-op threads per session (1 serves concurrent requests best
            on a small machine).
        providers: ``auto`` (CUDA when onnxruntime-gpu and a GPU exist), ``cpu`` or ``cuda``.
        max_candidates: the most candidates in one ``/rank`` request (a 422 above).
        max_k: the most items one ``/retrieve`` or ``/recommend`` asks for.
        user_feature, item_feature: the ranker's raw features that take the user id and a
            retrieved item id in ``/recommend``.
        value: the value formula's weights (``{task: w}``; empty: the default formula over
            the model's tasks) and ``penalties``.
        reload_interval_s: how often the export folders are checked for a new export
            (0: only ``POST /reload``).
        features: the feature store's online store (``{redis_url, project}`` or
            ``{sqlite_path, project}``, exactly one store; empty: off):
            ``/rank`` reads the features a request lacks by id
            (:mod:`serving.inference.features`).
        log_level: uvicorn's log level.
    """

    run_dir: str | None = None
    retrieval_run_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 8500
    threads: int = 1
    providers: str = "auto"
    max_candidates: int = 2000
    max_k: int = 2000
    user_feature: str = "user_id"
    item_feature: str = "post_id"
    value: Mapping[str, float] = field(default_factory=dict)
    penalties: Mapping[str, float] = field(default_factory=dict)
    reload_interval_s: float = 2.0
    log_level: str = "warning"
    features: Mapping[str, Any] = field(default_factory=dict)

    def export_dirs(self) -> list[Path]:
        """The export folders named by ``run_dir`` and ``retrieval_run_dir``."""
        dirs = [export_folder(p, key) for key, p in self._named() if p]
        if not dirs:
            raise ValueError("serve.run_dir is required: a run folder exported by `recsys export`")
        return dirs

    def _named(self) -> list[tuple[str, str | None]]:
        return [
            ("serve.run_dir", self.run_dir),
            ("serve.retrieval_run_dir", self.retrieval_run_dir),
        ]


def export_folder(path: str | Path, key: str = "serve.run_dir") -> Path:
    """``path`` if it holds ``manifest.json``, else ``path/export`` if that does; else an error
    naming ``key`` and the command that makes an export."""
    path = Path(path)
    for candidate in (path, path / "export"):
        if (candidate / MANIFEST).is_file():
            return candidate
    if not path.exists():
        raise ValueError(f"{key}: '{path}' does not exist")
    raise ValueError(
        f"{key}: '{path}' has no {MANIFEST} (nor export/{MANIFEST}): run "
        f"`recsys export export.run_dir={path}` first"
    )


def serve_settings(values: Mapping[str, Any] | None = None) -> ServeSettings:
    """Settings from a mapping such as the resolved ``serve`` node; unknown keys and bad values
    raise ``ValueError`` naming them.

    >>> serve_settings({"port": 9000}).port
    9000
    """
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(ServeSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"serve settings: unknown key(s) {unknown}; known: {sorted(known)}")
    values["value"] = dict(values.get("value") or {})
    values["penalties"] = dict(values.get("penalties") or {})
    values["features"] = dict(values.get("features") or {})
    feature_settings(values["features"])  # checks the keys
    settings = ServeSettings(**values)
    checks = [
        ("port", 0 <= settings.port <= 65535),
        ("threads", settings.threads >= 0),
        ("max_candidates", settings.max_candidates >= 1),
        ("max_k", settings.max_k >= 1),
        ("reload_interval_s", settings.reload_interval_s >= 0),
        ("providers", settings.providers in ("auto", "cpu", "cuda")),
    ]
    for name, ok in checks:
        if not ok:
            raise ValueError(f"serve settings: bad serve.{name}: {getattr(settings, name)!r}")
    return settings
