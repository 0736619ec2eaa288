"""The export manifest: what a served model takes, gives and needs, written next to its files.

This module is the one home of the format: ``recsys export`` writes it, ``serving.inference``
reads it. It imports only the standard library (no torch, no numpy), so a serving process
that reads a manifest loads nothing of the training stack.

Layout of an export folder (``RUN/export/``)::

    manifest.json              this format (written last: its presence means "complete")
    ranker.onnx                a ranker run: dense + per-feature ids/lengths -> one
                               probability per task
    preprocess/                the training pipeline's fitted artifacts: preprocess.json,
                               dense_stats.json, vocab/NNN-<feature>.parquet (value, id, count)
    user_tower.onnx            a two-tower run: user features -> unit vectors  B x D
    item_tower.onnx            item features -> unit vectors  N x D
    item_vectors.npy           the catalog through the item tower, row j = item index j (N x D)
    index/                     the FAISS index built from item_vectors.npy (index.faiss,
                               ids.npy, config.json; the FAISS ids are item indices)
    retrieval/users.parquet    user index, raw id, side-feature codes, history (item indices)
    retrieval/items.parquet    item index, raw id, side-feature codes
    retrieval/vocab/<f>.parquet  raw value -> code of each side feature (0: unseen)

Model inputs (every model): ``dense`` ``batch x D`` float32 (absent when ``D == 0``), and for
each sparse feature ``f`` in order ``<f>.ids`` (``n_f`` int64, the ids of every row
concatenated) and ``<f>.lengths`` (``batch`` int32, ids per row; 1 for single-valued
features, any count, 0 included, for multi-hot ones). Ranker outputs: one ``batch`` float32
probability per task, named after the task. Tower outputs: ``vector`` ``batch x D`` float32.

Example::

    manifest = load_manifest(Path("runs/x/export"))     # checks version and file hashes
    manifest.models["ranker"].inputs[0].name            # 'dense'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "Manifest",
    "ManifestError",
    "ModelFile",
    "TensorSpec",
    "file_sha256",
    "ids_input",
    "lengths_input",
    "load_manifest",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
Kind = Literal["ranker", "two_tower"]
_KINDS = ("ranker", "two_tower")
_DTYPES = ("float32", "int32", "int64")


class ManifestError(ValueError):
    """An export folder that cannot be served: the message names the file and what is wrong."""


def ids_input(feature: str) -> str:
    """The input name of a sparse feature's concatenated ids."""
    return f"{feature}.ids"


def lengths_input(feature: str) -> str:
    """The input name of a sparse feature's per-row id counts."""
    return f"{feature}.lengths"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    Attributes:
        name: the ONNX graph name.
        dtype: ``float32`` | ``int32`` | ``int64``.
        shape: per axis an int (fixed) or a name (dynamic: ``batch``, ``n_<feature>``).
        feature: the sparse feature an ids/lengths input belongs to, the task of a ranker
            output; ``None`` otherwise.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    feature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        dtype = str(d["dtype"])
        if dtype not in _DTYPES:
            raise ManifestError(f"tensor {d.get('name')!r}: dtype {dtype!r} not in {_DTYPES}")
        return cls(str(d["name"]), dtype, tuple(d["shape"]), d.get("feature"))


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of the export, its hash and its signature."""

    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "opset": self.opset,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelFile:
        return cls(
            file=str(d["file"]),
            sha256=str(d["sha256"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            opset=int(d["opset"]),
        )

    def sparse_features(self) -> list[str]:
        """The sparse features this model reads, in input order."""
        return [t.feature for t in self.inputs if t.name.endswith(".ids") and t.feature]

    def num_dense(self) -> int:
        """``D`` of the ``dense`` input (0 when the model has none)."""
        for t in self.inputs:
            if t.name == "dense":
                return int(t.shape[1])
        return 0


@dataclass
class Manifest:
    """What ``manifest.json`` holds (see the module docstring for the folder layout).

    Attributes:
        kind: ``ranker`` or ``two_tower``.
        model: ``{"class": ..., "experiment": ...}``.
        models: ``{"ranker": ...}`` or ``{"user_tower": ..., "item_tower": ...}``.
        feature_spec: a ranker's prepared feature spec (``FeatureSpec.to_dict()``): dense
            names, sparse features with cardinalities and multi-hot flags, labels; a two-tower
            run's ``{"user": [...], "item": [...], "cardinalities": {...}, "multi": [...]}``.
        preprocessing: what request-time preprocessing needs. Ranker: ``artifacts`` (the
            folder of the fitted preprocessing, relative), ``id_convention``, ``dense``
            ``{name: {fill, log1p, mean, std}}``, ``categorical`` ``{name: {kind, multi,
            cardinality, file | buckets + hash, separator}}``, ``raw_schema``. Two-tower:
            ``users``, ``items``, ``vocab`` files, ``history_len``, ``user_features``,
            ``item_features``, ``item_multi_features``, ``separator``.
        retrieval: two-tower only: ``item_vectors``, ``index`` (file, kind, metric, dim),
            ``num_items``.
        run: the training run: ``run_dir``, ``run_id`` (MLflow), ``experiment``, ``metrics``
            (test), ``git_commit``, ``config_hash``.
        parity: per model, ``{"rows", "max_abs_diff", "tolerance", "split"}``.
        created_at: ISO time of the export.
    """

    kind: Kind
    model: dict[str, Any]
    models: dict[str, ModelFile]
    feature_spec: dict[str, Any]
    preprocessing: dict[str, Any]
    run: dict[str, Any]
    retrieval: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "kind": self.kind,
            "model": self.model,
            "created_at": self.created_at,
            "run": self.run,
            "models": {k: m.to_dict() for k, m in self.models.items()},
            "feature_spec": self.feature_spec,
            "preprocessing": self.preprocessing,
            "retrieval": self.retrieval,
            "parity": self.parity,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = MANIFEST) -> Manifest:
        """Parses a manifest; a wrong format version or a missing key is a ManifestError."""
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ManifestError(
                f"{where}: export format version {version!r}, this code reads version "
                f"{FORMAT_VERSION}; export the run again with this version of recsys"
            )
        kind = d.get("kind")
        if kind not in _KINDS:
            raise ManifestError(f"{where}: kind {kind!r} is not one of {_KINDS}")
        try:
            manifest = cls(
                kind=kind,
                model=dict(d["model"]),
                models={k: ModelFile.from_dict(m) for k, m in d["models"].items()},
                feature_spec=dict(d["feature_spec"]),
                preprocessing=dict(d["preprocessing"]),
                run=dict(d["run"]),
                retrieval=dict(d.get("retrieval") or {}),
                parity=dict(d.get("parity") or {}),
                created_at=str(d.get("created_at", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"{where}: malformed manifest ({exc!r})") from exc
        manifest.check(where)
        return manifest

    def check(self, where: str = MANIFEST) -> None:
        """Checks that the model signatures agree with the feature spec (same features, in
        order, same dense width, one output per task)."""
        wanted = ("ranker",) if self.kind == "ranker" else ("user_tower", "item_tower")
        missing = [m for m in wanted if m not in self.models]
        if missing:
            raise ManifestError(f"{where}: a {self.kind} export needs models {missing}")
        if self.kind == "ranker":
            model = self.models["ranker"]
            spec = self.feature_spec
            names = [f["name"] for f in spec["sparse"]]
            if model.sparse_features() != names:
                raise ManifestError(
                    f"{where}: ranker.onnx reads sparse features {model.sparse_features()} but "
                    f"the feature spec has {names}"
                )
            if model.num_dense() != len(spec["dense"]):
                raise ManifestError(
                    f"{where}: ranker.onnx reads {model.num_dense()} dense features but the "
                    f"feature spec has {len(spec['dense'])}"
                )
            tasks = [t.name for t in model.outputs]
            if tasks != list(spec["labels"]):
                raise ManifestError(
                    f"{where}: ranker.onnx outputs {tasks} but the tasks are {spec['labels']}"
                )
        else:
            for side, key in (("user", "user_tower"), ("item", "item_tower")):
                got = self.models[key].sparse_features()
                if got != list(self.feature_spec[side]):
                    raise ManifestError(
                        f"{where}: {key} reads {got} but the feature spec's {side} side is "
                        f"{self.feature_spec[side]}"
                    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(export_dir: Path, manifest: Manifest) -> Path:
    """Writes ``manifest.json`` atomically (temporary file, fsync, rename); returns its path."""
    manifest.check()
    path = Path(export_dir) / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(manifest.to_dict(), fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_manifest(export_dir: Path, *, verify: Sequence[str] | None = None) -> Manifest:
    """Reads and checks ``export_dir/manifest.json``.

    Checks the format version, the signatures against the feature spec, and that every model
    file exists with the sha256 the manifest records (``verify``: the models to hash; default
    all), so a model file swapped or damaged after export refuses to load.

    Raises:
        ManifestError: no manifest, a version mismatch, a malformed or inconsistent manifest,
            a missing model file or one whose hash differs.
    """
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.exists():
        raise ManifestError(
            f"no {MANIFEST} in {export_dir}: not an export folder, or the export did not "
            "finish (run `recsys export export.run_dir=RUN`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    manifest = Manifest.from_dict(data, where=str(path))
    for name in verify if verify is not None else list(manifest.models):
        model = manifest.models[name]
        file = export_dir / model.file
        if not file.exists():
            raise ManifestError(f"{path}: model file {model.file} is missing")
        digest = file_sha256(file)
        if digest != model.sha256:
            raise ManifestError(
                f"{file}: sha256 {digest[:12]}... does not match the manifest's "
                f"{model.sha256[:12]}...: the file was changed after export"
            )
    return manifest
