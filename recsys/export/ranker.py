"""A ranker run's export folder: ``ranker.onnx``, the preprocessing artifacts, the manifest.

:func:`export_ranker_run` exports a trained ranker (DLRM, DCNv2, multi-task, logistic
regression; any embedding kind) of a prepared data set, copies the data set's fitted
preprocessing (vocabularies, hashing, dense statistics) beside it, checks parity against
PyTorch eager on a split and writes ``manifest.json`` last. A parity failure raises
:class:`~recsys.export.folder.ParityError` and leaves no manifest (nothing to serve).

Example::

    manifest, parity = export_ranker_run(model, dataset, run_dir / "export",
                                         run=run_facts(run_dir, "multitask_social"))
    parity.worst          # e.g. 6e-8
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from recsys.data.prepared import PreparedDataset
from recsys.export.folder import ParityError, fresh_export_dir
from recsys.export.graph import SparseInput
from recsys.export.manifest import Manifest, write_manifest
from recsys.export.onnx_export import export_ranker
from recsys.export.parity import TOLERANCE, ParityReport, ranker_parity, session

__all__ = ["ExportSettings", "export_ranker_run", "preprocessing_section"]

PREPROCESS_DIR = "preprocess"


@dataclass(frozen=True)
class ExportSettings:
    """How to check an export.

    Attributes:
        parity_split: the prepared split scored by both runtimes.
        parity_rows: at most this many rows of it (``None``: all).
        tolerance: largest allowed |ONNX Runtime - eager| on probabilities (or vectors).
        batch_size: rows per parity batch.
    """

    parity_split: str = "test"
    parity_rows: int | None = 200_000
    tolerance: float = TOLERANCE
    batch_size: int = 4096


def preprocessing_section(export_dir: Path, separators: Mapping[str, str]) -> dict[str, Any]:
    """The manifest's ``preprocessing`` of a ranker: the copied artifacts' categorical layout
    (vocabulary files relative to the export folder), dense statistics, id convention, raw
    schema and each multi-hot feature's value separator."""
    meta = json.loads((export_dir / PREPROCESS_DIR / "preprocess.json").read_text())
    dense = json.loads((export_dir / PREPROCESS_DIR / "dense_stats.json").read_text())
    categorical = {}
    for name, entry in meta["categorical"].items():
        entry = dict(entry)
        if "file" in entry:
            entry["file"] = f"{PREPROCESS_DIR}/{entry['file']}"
        entry["separator"] = separators.get(name) if entry.get("multi") else None
        categorical[name] = entry
    return {
        "artifacts": PREPROCESS_DIR,
        "artifacts_format": meta["format_version"],
        "raw_schema": meta["schema"],
        "id_convention": meta["id_convention"],
        "dense": dense,
        "categorical": categorical,
    }


def export_ranker_run(
    model: nn.Module,
    dataset: PreparedDataset,
    export_dir: Path,
    *,
    run: Mapping[str, Any],
    separators: Mapping[str, str] | None = None,
    settings: ExportSettings | None = None,
) -> tuple[Manifest, ParityReport]:
    """Writes the export folder of a trained ranker (see the module docstring).

    Args:
        model: the trained ranker (eval mode is set here), on CPU.
        dataset: the prepared data set it was trained on (its artifacts and a split for parity).
        export_dir: the folder to (re)write.
        run: the training run's facts (:func:`~recsys.export.folder.run_facts`).
        separators: value separator of each raw multi-valued column (``{"genres": "|"}``).
        settings: parity checks.

    Raises:
        ParityError: ONNX Runtime and eager differ by more than ``settings.tolerance``.
    """
    settings = settings or ExportSettings()
    export_dir = fresh_export_dir(export_dir)
    spec = dataset.spec
    model = model.eval().to("cpu")
    features = [SparseInput(f.name, f.cardinality) for f in spec.sparse]
    multi = {f.name for f in spec.sparse if f.multi_hot}
    shutil.copytree(dataset.root / "artifacts", export_dir / PREPROCESS_DIR)
    model_file, _ = export_ranker(
        model, features, multi, spec.num_dense, list(spec.labels), export_dir / "ranker.onnx"
    )
    loader = dataset.loader(settings.parity_split, settings.batch_size, prefetch=0)
    parity = ranker_parity(
        model,
        session(str(export_dir / "ranker.onnx")),
        loader,
        spec.sparse_names,
        list(spec.labels),
        split=settings.parity_split,
        max_rows=settings.parity_rows,
        tolerance=settings.tolerance,
    )
    if not parity.ok:
        raise ParityError(
            f"ranker.onnx differs from the trained model by {parity.worst:.3g} on "
            f"{parity.rows} {parity.split} rows (tolerance {parity.tolerance:g}): "
            f"{parity.max_abs_diff}"
        )
    manifest = Manifest(
        kind="ranker",
        model={"class": type(model).__name__, "experiment": run.get("experiment")},
        models={"ranker": model_file},
        feature_spec=spec.to_dict(),
        preprocessing=preprocessing_section(export_dir, dict(separators or {})),
        run=dict(run),
        parity={"ranker": parity.to_dict()},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_manifest(export_dir, manifest)
    return manifest, parity
