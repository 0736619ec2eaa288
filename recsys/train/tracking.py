"""Experiment tracking with MLflow (the only module in ``recsys`` that imports mlflow).

The default store is a SQLite file under the outputs folder (``sqlite:///.../mlflow.db``) with
artifacts beside it, so a fresh machine needs no tracking server.
"""

from __future__ import annotations

import fcntl
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class TrackingConfig:
    """Where runs go. ``tracking_uri=None`` means ``sqlite:///<output_root>/mlflow.db``."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "recsys"
    run_name: str | None = None
    log_model: bool = True


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping to ``{"a.b.c": value}``; lists become their string form."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def numeric_metrics(d: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of a nested metrics mapping, flattened with '/' separators."""
    out: dict[str, float] = {}
    for key, value in flatten(d).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[f"{prefix}/{key.replace('.', '/')}"] = float(value)
    return out


class Tracker:
    """Records one run; every method is a no-op when tracking is disabled."""

    def __init__(self, config: TrackingConfig, output_root: Path) -> None:
        self.config = config
        self.output_root = output_root
        self.run_id: str | None = None
        self._mlflow: Any = None

    @property
    def tracking_uri(self) -> str:
        if self.config.tracking_uri:
            return self.config.tracking_uri
        return f"sqlite:///{(self.output_root / 'mlflow.db').resolve()}"

    def start(self, params: Mapping[str, Any]) -> None:
        """Starts the run and logs ``params`` (flattened, values truncated to MLflow's limit)."""
        if not self.config.enabled:
            return
        import mlflow

        self._mlflow = mlflow
        self.output_root.mkdir(parents=True, exist_ok=True)
        with _store_lock(self.tracking_uri):
            mlflow.set_tracking_uri(self.tracking_uri)
            if mlflow.get_experiment_by_name(self.config.experiment) is None:
                artifacts = (self.output_root / "mlartifacts").resolve()
                mlflow.create_experiment(
                    self.config.experiment, artifact_location=artifacts.as_uri()
                )
            mlflow.set_experiment(self.config.experiment)
            run = mlflow.start_run(run_name=self.config.run_name)
        self.run_id = run.info.run_id
        flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i : i + 100]))

    def record_config(self, run_dir: Path, resolved_config: str) -> None:
        """Writes ``config.resolved.yaml`` into ``run_dir`` and logs it (nothing if empty)."""
        if not resolved_config:
            return
        path = run_dir / "config.resolved.yaml"
        path.write_text(resolved_config)
        self.log_artifact(path)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Logs ``metrics``; ``@`` (not allowed in MLflow names) becomes ``_at_``."""
        if self._mlflow is not None and metrics:
            clean = {k.replace("@", "_at_"): v for k, v in metrics.items()}
            self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: Path) -> None:
        if self._mlflow is not None:
            self._mlflow.log_artifact(str(path))

    def log_model(self, model: nn.Module, name: str = "model") -> None:
        """Logs the trained module (pickled: the "pt2" format cannot hold TorchRec modules)."""
        if self._mlflow is None or not self.config.log_model:
            return
        import logging

        import mlflow.pytorch

        # Pin the requirements instead of letting MLflow infer them (slow, and it warns about
        # torch's "+cpu" label); its pickle-safety warning is known: models are our own files.
        requirements = [f"torch=={torch.__version__.split('+')[0]}", "torchrec", "recsys-social"]
        quiet = logging.getLogger("mlflow.pytorch")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            mlflow.pytorch.log_model(
                model, name=name, serialization_format="pickle", pip_requirements=requirements
            )
        finally:
            quiet.setLevel(level)

    def end(self, status: str = "FINISHED") -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status=status)
            self._mlflow = None


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Holds a file lock next to a SQLite store while it is created or migrated and the
    experiment made: the trials of a sweep start their runs at the same moment, and two
    processes creating one SQLite schema (or one experiment) at once fail."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def log_export(
    tracking_uri: str,
    run_id: str,
    export_dir: Path,
    onnx_files: Mapping[str, Path],
    registered_name: str | None,
) -> dict[str, Any]:
    """Adds an export folder to a finished MLflow run.

    The folder's files go under the run's ``export/`` artifacts, and each ONNX model is logged
    in MLflow's model format (``mlflow.onnx``, artifact ``onnx_<name>``) and, with
    ``registered_name``, registered as ``<registered_name>`` (a ranker) or
    ``<registered_name>-<name>`` (each tower), so a model-registry user finds it. Returns
    ``{"run_id", "artifacts", "registered": {name: "model name/version"}}``.
    """
    import contextlib
    import io
    import logging

    import mlflow
    import mlflow.onnx
    import onnx

    mlflow.set_tracking_uri(tracking_uri)
    # the run's own experiment (another may be active in this process, e.g. after a train)
    mlflow.set_experiment(experiment_id=mlflow.get_run(run_id).info.experiment_id)
    registered: dict[str, str] = {}
    quiet = logging.getLogger("mlflow")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # the registry prints its progress to stderr: the runner prints the outcome
        with contextlib.redirect_stderr(io.StringIO()), mlflow.start_run(run_id=run_id):
            mlflow.log_artifacts(str(export_dir), artifact_path="export")
            for name, path in onnx_files.items():
                model_name = None
                if registered_name:
                    single = len(onnx_files) == 1
                    model_name = registered_name if single else f"{registered_name}-{name}"
                info = mlflow.onnx.log_model(
                    onnx.load(str(path)),
                    name=f"onnx_{name}",
                    registered_model_name=model_name,
                    pip_requirements=["onnxruntime"],
                )
                if model_name is not None:
                    version = getattr(info, "registered_model_version", None)
                    registered[name] = f"{model_name}/{version}"
    finally:
        quiet.setLevel(level)
    return {"run_id": run_id, "artifacts": "export", "registered": registered}
