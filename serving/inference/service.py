"""The models a running service answers with, and their hot reload.

:func:`load_models` opens every export folder of the settings (each checked: manifest version,
file hashes, ONNX signatures) into one immutable :class:`ModelSet`: an
:class:`~serving.inference.ranker.OnnxRanker`, a
:class:`~serving.inference.retriever.FaissRetriever`, or both and the
:class:`~serving.inference.retriever.Recommender` composing them.

:class:`InferenceService` holds the current set. A request reads ``service.models`` once and
uses that set to the end, so swapping in a new set never disturbs a request in flight: reload
loads the new export completely (while the old set keeps serving), then replaces the reference.
The watcher thread checks the folders' ``manifest.json`` every ``reload_interval_s``: a new
export (``recsys export`` removes the manifest first and writes it last) is loaded once its
manifest is back; a folder without a manifest (an export being written) or a new export that
does not load leaves the old set serving, counted in ``/metrics``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.export.manifest import MANIFEST, ManifestError, load_manifest
from recsys.ranking.value import ValueFormula
from serving.inference.features import OnlineFeatures, feature_settings
from serving.inference.metrics import Metrics
from serving.inference.preprocess import PreprocessSettings
from serving.inference.ranker import OnnxRanker, RankerSettings
from serving.inference.retriever import FaissRetriever, Recommender, RetrieverSettings
from serving.inference.session import SessionSettings
from serving.inference.settings import ServeSettings

__all__ = ["InferenceService", "ModelSet", "load_models"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSet:
    """One consistent set of loaded models (never changed after loading)."""

    version: int
    ranker: OnnxRanker | None
    retriever: FaissRetriever | None
    recommender: Recommender | None
    fingerprints: dict[Path, str]
    loaded_at: float = field(default_factory=time.time)

    def metadata(self) -> dict[str, Any]:
        """``GET /metadata``: the manifests of the loaded models and the set's version."""
        out: dict[str, Any] = {"version": self.version, "loaded_at": self.loaded_at}
        for name, model in (("ranker", self.ranker), ("retriever", self.retriever)):
            if model is not None:
                out[name] = {"export_dir": str(model.export_dir), **model.manifest.to_dict()}
        out["recommend"] = self.recommender is not None
        return out

    def labels(self) -> list[dict[str, str]]:
        """One label set per model for ``recsys_model_info``."""
        out = []
        for name, model in (("ranker", self.ranker), ("retriever", self.retriever)):
            if model is not None:
                m = model.manifest
                out.append(
                    {
                        "model": name,
                        "kind": m.kind,
                        "class": str(m.model.get("class")),
                        "run_id": str(m.run.get("run_id")),
                        "created_at": m.created_at,
                        "version": str(self.version),
                    }
                )
        return out


def fingerprint(export_dir: Path) -> str | None:
    """sha256 of the folder's ``manifest.json`` (``None`` while there is none)."""
    try:
        return hashlib.sha256((export_dir / MANIFEST).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _value_formula(settings: ServeSettings) -> ValueFormula | None:
    if not settings.value and not settings.penalties:
        return None
    return ValueFormula(weights=dict(settings.value), penalties=dict(settings.penalties))


def load_models(
    settings: ServeSettings, version: int = 1, export_dirs: list[Path] | None = None
) -> ModelSet:
    """Opens the exports of ``settings`` (or ``export_dirs``; see the module docstring).

    Raises:
        ManifestError: an export that cannot be served (version, hashes, signatures).
        ValueError: two exports of the same kind, or bad settings.
    """
    session = SessionSettings(intra_op_num_threads=settings.threads, providers=settings.providers)
    ranker: OnnxRanker | None = None
    retriever: FaissRetriever | None = None
    prints: dict[Path, str] = {}
    for export_dir in export_dirs if export_dirs is not None else settings.export_dirs():
        digest = fingerprint(export_dir)
        manifest = load_manifest(export_dir)
        if manifest.kind == "ranker":
            if ranker is not None:
                raise ValueError(f"{export_dir}: a second ranker export; serve one ranker")
            ranker = OnnxRanker(
                export_dir,
                manifest,
                RankerSettings(
                    session=session,
                    preprocess=PreprocessSettings(max_rows=settings.max_candidates),
                    value=_value_formula(settings),
                ),
            )
        else:
            if retriever is not None:
                raise ValueError(f"{export_dir}: a second two-tower export; serve one")
            retriever = FaissRetriever(
                export_dir, manifest, RetrieverSettings(session=session, max_k=settings.max_k)
            )
        if digest is not None:
            prints[export_dir] = digest
    recommender = None
    if ranker is not None and retriever is not None:
        recommender = Recommender(
            retriever,
            ranker,
            user_feature=settings.user_feature,
            item_feature=settings.item_feature,
        )
    return ModelSet(version, ranker, retriever, recommender, prints)


class InferenceService:
    """The current :class:`ModelSet`, its hot reload and the service's metrics."""

    def __init__(
        self,
        settings: ServeSettings,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        features = feature_settings(settings.features)
        self.online = OnlineFeatures(features, clock) if features is not None else None
        self.export_dirs = settings.export_dirs()  # resolved once: a reload reads the same
        self.models = load_models(settings, export_dirs=self.export_dirs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.last_reload_error: str | None = None

    def changed(self) -> bool:
        """Whether every export folder has a complete manifest and one of them is new."""
        now = {d: fingerprint(d) for d in self.export_dirs}
        if any(v is None for v in now.values()):
            return False  # an export is being written: keep serving the loaded one
        return now != self.models.fingerprints

    def reload(self, *, force: bool = False) -> dict[str, Any]:
        """Loads the exports again when they changed (or ``force``) and swaps the set in.

        Returns ``{"reloaded": bool, "version": int, "error": str | None}``; a failed load
        keeps the old set (and says why)."""
        with self._lock:
            if not force and not self.changed():
                return {"reloaded": False, "version": self.models.version, "error": None}
            try:
                models = load_models(self.settings, self.models.version + 1, self.export_dirs)
            except (ManifestError, ValueError, OSError) as error:
                self.metrics.count_reload("failed")
                self.last_reload_error = str(error)
                log.error("reload failed, still serving version %d: %s", self.models.version, error)
                return {"reloaded": False, "version": self.models.version, "error": str(error)}
            self.models = models  # one reference swap: requests in flight keep their set
            self.last_reload_error = None
            self.metrics.count_reload("ok")
            log.info("loaded model set version %d", models.version)
            return {"reloaded": True, "version": models.version, "error": None}

    def start_watching(self) -> None:
        """Starts the watcher thread (no-op when ``reload_interval_s`` is 0)."""
        interval = self.settings.reload_interval_s
        if interval <= 0 or self._watcher is not None:
            return

        def watch() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload()
                except Exception:  # never let the watcher die: the next round retries
                    log.exception("model watcher")

        self._watcher = threading.Thread(target=watch, name="model-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    def input_counters(self) -> dict[str, Mapping[str, Mapping[str, int]]]:
        """``{model: {kind: {feature: count}}}`` of the request-time inputs."""
        out: dict[str, Mapping[str, Mapping[str, int]]] = {}
        models = self.models
        sources = (
            ("ranker", models.ranker.preprocessor.counters if models.ranker else None),
            ("retriever", models.retriever.counters if models.retriever else None),
        )
        if self.online is not None:
            out["feature_store"] = self.online.counters()
        for name, counters in sources:
            if counters is not None:
                snap = counters.snapshot()
                out[name] = {k: v for k, v in snap.items() if isinstance(v, dict)}
        return out
