"""ONNX Runtime sessions of an export: settings, providers, the signature check against the
manifest, and the validation of pre-built inputs.

* :class:`SessionSettings` -> ``onnxruntime.SessionOptions`` (threads, execution mode, graph
  optimization level) and the execution providers: ``auto`` puts ``CUDAExecutionProvider``
  first when ``onnxruntime.get_available_providers()`` has it (onnxruntime-gpu and a GPU),
  then the CPU provider.
* :func:`open_session` loads a model file and refuses it (:class:`ManifestError`) when the
  session's input or output names, dtypes or ranks (or a fixed dimension) differ from the
  manifest's :class:`~recsys.export.manifest.ModelFile`.
* :class:`FeedValidator` checks inputs a client built itself: names, dtypes, shapes, one batch
  size, lengths that sum to the id count (1 per row for single-valued features) and ids in
  ``[0, cardinality)``; a :class:`RequestError` names the input otherwise.

Example::

    session = open_session(export_dir / "ranker.onnx", manifest.models["ranker"],
                           SessionSettings(intra_op_num_threads=1))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from recsys.export.manifest import ManifestError, ModelFile, TensorSpec
from serving.inference.columns import check_row_count
from serving.inference.errors import RequestError

__all__ = ["FeedValidator", "SessionSettings", "open_session", "providers_for"]

ExecutionMode = Literal["sequential", "parallel"]
OptimizationLevel = Literal["disabled", "basic", "extended", "all"]
ProviderChoice = Literal["auto", "cpu", "cuda"]

_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}
_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ORT_TYPES = {"float32": "tensor(float)", "int32": "tensor(int32)", "int64": "tensor(int64)"}
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclass(frozen=True)
class SessionSettings:
    """How ONNX Runtime runs a model.

    Attributes:
        intra_op_num_threads: threads inside one operator (1: best latency per request on a
            small machine serving concurrent requests; 0: ONNX Runtime's default, all cores).
        inter_op_num_threads: threads across operators (used by ``parallel`` mode only).
        execution_mode: ``sequential`` or ``parallel`` (independent branches concurrently).
        graph_optimization_level: ``disabled``, ``basic``, ``extended`` or ``all``.
        providers: ``auto`` (CUDA first when available, then CPU), ``cpu`` or ``cuda`` (an
            error where CUDA is not available).
    """

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    execution_mode: ExecutionMode = "sequential"
    graph_optimization_level: OptimizationLevel = "all"
    providers: ProviderChoice = "auto"

    def __post_init__(self) -> None:
        if self.intra_op_num_threads < 0 or self.inter_op_num_threads < 0:
            raise ValueError("thread counts must be >= 0 (0: ONNX Runtime's default)")
        if self.execution_mode not in _MODES:
            raise ValueError(f"execution_mode must be one of {list(_MODES)}")
        if self.graph_optimization_level not in _LEVELS:
            raise ValueError(f"graph_optimization_level must be one of {list(_LEVELS)}")
        if self.providers not in ("auto", "cpu", "cuda"):
            raise ValueError("providers must be 'auto', 'cpu' or 'cuda'")

    def options(self) -> ort.SessionOptions:
        """The ``onnxruntime.SessionOptions`` of these settings."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_num_threads
        opts.inter_op_num_threads = self.inter_op_num_threads
        opts.execution_mode = _MODES[self.execution_mode]
        opts.graph_optimization_level = _LEVELS[self.graph_optimization_level]
        return opts


def providers_for(choice: ProviderChoice, available: list[str] | None = None) -> list[str]:
    """The execution providers, in order, for ``choice`` given the ``available`` ones
    (default: ``onnxruntime.get_available_providers()``)."""
    available = ort.get_available_providers() if available is None else available
    if choice == "cuda" and CUDA not in available:
        raise ValueError(
            f"providers='cuda' but ONNX Runtime offers only {available} "
            "(install onnxruntime-gpu on a machine with a GPU, or use 'auto')"
        )
    if choice != "cpu" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def _check(kind: str, got: list[ort.NodeArg], want: tuple[TensorSpec, ...], where: str) -> None:
    names = [a.name for a in got]
    if names != [t.name for t in want]:
        raise ManifestError(
            f"{where}: the model's {kind} are {names} but the manifest lists "
            f"{[t.name for t in want]}"
        )
    for arg, spec in zip(got, want):
        if arg.type != _ORT_TYPES[spec.dtype]:
            raise ManifestError(
                f"{where}: {kind[:-1]} {spec.name!r} is {arg.type} in the model, "
                f"{spec.dtype} in the manifest"
            )
        if len(arg.shape) != len(spec.shape):
            raise ManifestError(
                f"{where}: {kind[:-1]} {spec.name!r} has rank {len(arg.shape)} in the model, "
                f"{len(spec.shape)} in the manifest ({spec.shape})"
            )
        for dim, expected in zip(arg.shape, spec.shape):
            if isinstance(dim, int) and isinstance(expected, int) and dim != expected:
                raise ManifestError(
                    f"{where}: {kind[:-1]} {spec.name!r} has shape {arg.shape} in the model, "
                    f"{list(spec.shape)} in the manifest"
                )


def open_session(path: Path, model: ModelFile, settings: SessionSettings) -> ort.InferenceSession:
    """An ONNX Runtime session of ``path`` whose signature matches ``model``.

    Raises:
        ManifestError: a file ONNX Runtime cannot load, or a signature that differs from the
            manifest (names the tensor).
    """
    try:
        session = ort.InferenceSession(
            str(path), sess_options=settings.options(), providers=providers_for(settings.providers)
        )
    except (
        RuntimeError,
        ort_state.Fail,
        ort_state.InvalidGraph,
        ort_state.InvalidProtobuf,
        ort_state.NoSuchFile,
    ) as exc:
        raise ManifestError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
    _check("inputs", session.get_inputs(), model.inputs, str(path))
    _check("outputs", session.get_outputs(), model.outputs, str(path))
    return session


class FeedValidator:
    """Checks a client's pre-built inputs against a model's signature.

    Args:
        model: the model's manifest entry (inputs with dtypes and shapes).
        cardinalities: sparse feature -> table rows (ids must lie in ``[0, cardinality)``).
        multi: the multi-hot features (the others take exactly one id per row).
        max_rows: the largest batch accepted.
    """

    def __init__(
        self,
        model: ModelFile,
        cardinalities: Mapping[str, int],
        multi: set[str] | frozenset[str],
        max_rows: int,
    ) -> None:
        self.inputs = {t.name: t for t in model.inputs}
        self.features = model.sparse_features()
        missing = [f for f in self.features if f not in cardinalities]
        if missing:
            raise ManifestError(f"{model.file}: no cardinality for sparse features {missing}")
        self.cardinalities = {f: int(cardinalities[f]) for f in self.features}
        self.multi = frozenset(multi)
        self.max_rows = max_rows
        self.dense_dim = model.num_dense()

    def validate(self, feeds: Mapping[str, object]) -> dict[str, np.ndarray]:
        """The feeds as arrays of the model's dtypes, in input order.

        NumPy arrays must have the input's dtype; lists are converted (an integer input takes
        integers only). Returns a new dict; the arrays are not copied.

        Raises:
            RequestError: a missing or unknown input, a wrong dtype or shape, batch sizes that
                disagree, lengths that do not sum to the ids' count, a single-valued feature
                without exactly one id per row, an id outside ``[0, cardinality)``.
        """
        if not isinstance(feeds, Mapping):
            raise RequestError(
                f"must map input names to arrays, got {type(feeds).__name__}", field="inputs"
            )
        for name in feeds:
            if name not in self.inputs:
                raise RequestError(
                    f"unknown input; the model takes {list(self.inputs)}", field=str(name)
                )
        out = {name: self._array(name, feeds) for name in self.inputs}
        batch = self._batch(out)
        for f in self.features:
            ids, lengths = out[f"{f}.ids"], out[f"{f}.lengths"]
            if lengths.shape != (batch,):
                raise RequestError(
                    f"has {lengths.shape[0]} rows, the batch has {batch}", field=f"{f}.lengths"
                )
            if lengths.size and lengths.min() < 0:
                raise RequestError("lengths must be >= 0", field=f"{f}.lengths")
            if f not in self.multi and not (lengths == 1).all():
                raise RequestError(
                    "a single-valued feature takes exactly 1 id per row", field=f"{f}.lengths"
                )
            total = int(lengths.sum(dtype=np.int64))
            if total != ids.shape[0]:
                raise RequestError(
                    f"lengths sum to {total} but there are {ids.shape[0]} ids", field=f"{f}.lengths"
                )
            card = self.cardinalities[f]
            if ids.size and (ids.min() < 0 or ids.max() >= card):
                bad = int(ids[(ids < 0) | (ids >= card)][0])
                raise RequestError(f"id {bad} outside [0, {card})", field=f"{f}.ids")
        return out

    def _array(self, name: str, feeds: Mapping[str, object]) -> np.ndarray:
        spec = self.inputs[name]
        if name not in feeds:
            raise RequestError("missing input", field=name)
        value = feeds[name]
        if isinstance(value, np.ndarray):
            if value.dtype != np.dtype(spec.dtype):
                raise RequestError(f"dtype {value.dtype}, the model takes {spec.dtype}", field=name)
            array = value
        else:
            try:
                array = np.asarray(value)
            except ValueError as exc:
                raise RequestError(f"not a rectangular array ({exc})", field=name) from None
            kind = "iu" if spec.dtype.startswith("int") else "iuf"
            if array.size and array.dtype.kind not in kind:
                raise RequestError(
                    f"values of kind {array.dtype}, the model takes {spec.dtype}", field=name
                )
            array = array.astype(spec.dtype)
        if array.ndim != len(spec.shape):
            raise RequestError(
                f"has {array.ndim} dimensions, the model takes {len(spec.shape)} "
                f"({list(spec.shape)})",
                field=name,
            )
        for size, dim in zip(array.shape, spec.shape):
            if isinstance(dim, int) and size != dim:
                raise RequestError(
                    f"shape {list(array.shape)}, the model takes {list(spec.shape)}", field=name
                )
        return array

    def _batch(self, arrays: Mapping[str, np.ndarray]) -> int:
        if "dense" in arrays:
            batch = arrays["dense"].shape[0]
        elif self.features:
            batch = arrays[f"{self.features[0]}.lengths"].shape[0]
        else:
            raise RequestError("the model takes no batch input", field="inputs")
        field = "dense" if "dense" in arrays else f"{self.features[0]}.lengths"
        check_row_count(batch, self.max_rows, field)
        return batch
