"""Writing the exported modules to ONNX (dynamo exporter, dynamic batch and id counts).

:func:`export_ranker` and :func:`export_tower` build the module of :mod:`recsys.export.graph`,
trace it with ``torch.onnx.export(dynamo=True)`` with a dynamic ``batch`` axis shared by
``dense`` and every ``<f>.lengths`` and one dynamic ``n_<f>`` axis per ``<f>.ids``, and return
the :class:`~recsys.export.manifest.ModelFile` that the manifest records (file hash and the
signature). Example inputs use odd sizes (batch 3, a multi-hot feature with 5 ids, one empty
row) so that no size is specialized into the graph.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from recsys.export.graph import ExportedRanker, ExportedTower, SparseInput
from recsys.export.manifest import ModelFile, TensorSpec, file_sha256, ids_input, lengths_input

__all__ = ["OPSET", "example_inputs", "export_module", "export_ranker", "export_tower"]

#: The ONNX opset written (ScatterND with reduction "add" needs >= 16).
OPSET = 18
_EXAMPLE_BATCH = 3
# loggers that report the exporter's internals (progress, fx tracing, empty attributes)
_NOISY = ("torch.onnx", "onnx_ir", "onnxscript", "torch.fx._symbolic_trace", "torch.export")


def sparse_specs(features: Sequence[SparseInput]) -> list[TensorSpec]:
    """The ``<f>.ids`` / ``<f>.lengths`` input specs of ``features``, in order."""
    specs = []
    for f in features:
        specs.append(TensorSpec(ids_input(f.feature), "int64", (f"n_{f.feature}",), f.feature))
        specs.append(TensorSpec(lengths_input(f.feature), "int32", ("batch",), f.feature))
    return specs


def example_inputs(
    specs: Sequence[TensorSpec], cardinalities: dict[str, int], multi: set[str]
) -> tuple[torch.Tensor, ...]:
    """Small valid inputs for ``specs``: batch 3, one id per row of single-valued features,
    lengths ``(2, 0, 3)`` for multi-hot ones, ids spread over each table."""
    b = _EXAMPLE_BATCH
    out: list[torch.Tensor] = []
    for spec in specs:
        if spec.name == "dense":
            out.append(torch.linspace(-1.0, 1.0, b * int(spec.shape[1])).reshape(b, -1))
        elif spec.name.endswith(".lengths"):
            lens = [2, 0, 3] if spec.feature in multi else [1] * b
            out.append(torch.tensor(lens, dtype=torch.int32))
        else:
            n = 5 if spec.feature in multi else b
            rows = cardinalities[str(spec.feature)]
            out.append(torch.arange(n, dtype=torch.int64) % rows)
    return tuple(out)


def export_module(
    module: nn.Module,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    example: tuple[torch.Tensor, ...],
    path: Path,
) -> ModelFile:
    """Exports ``module`` (eval mode, CPU) to ``path`` and returns its manifest entry.

    Every string axis of ``inputs`` becomes a dynamic dimension (axes with the same name share
    one); ``batch`` is at least 1, id counts may be 0.
    """
    dims: dict[str, torch.export.Dim] = {}

    def dim(name: str) -> torch.export.Dim:
        if name not in dims:
            dims[name] = torch.export.Dim(_dim_name(name), min=1 if name == "batch" else 0)
        return dims[name]

    dynamic = tuple(
        {axis: dim(size) for axis, size in enumerate(spec.shape) if isinstance(size, str)}
        for spec in inputs
    )
    module = module.eval().to("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        program = torch.onnx.export(
            module,
            example,
            dynamo=True,
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_shapes=(dynamic,),  # forward(*inputs): one varargs entry
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
        program.save(str(path))
    return ModelFile(path.name, file_sha256(path), tuple(inputs), tuple(outputs), OPSET)


def _dim_name(name: str) -> str:
    """A Python identifier for a dynamic axis (torch.export needs one)."""
    return "d_" + "".join(c if c.isalnum() else "_" for c in name)


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress lines and warns about internals: keep the console clean."""
    loggers = [logging.getLogger(n) for n in _NOISY]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_ranker(
    model: nn.Module,
    features: Sequence[SparseInput],
    multi: set[str],
    num_dense: int,
    tasks: Sequence[str],
    path: Path,
) -> tuple[ModelFile, ExportedRanker]:
    """Exports a trained ranker (inputs ``dense?`` + per-feature ids/lengths, one ``batch``
    probability per task); returns its manifest entry and the exported module (for parity)."""
    module = ExportedRanker(model, [f.feature for f in features], num_dense).eval()
    inputs = [TensorSpec("dense", "float32", ("batch", num_dense))] if num_dense else []
    inputs += sparse_specs(features)
    outputs = [TensorSpec(t, "float32", ("batch",), t) for t in tasks]
    cards = {f.feature: f.cardinality for f in features}
    example = example_inputs(inputs, cards, multi)
    return export_module(module, inputs, outputs, example, path), module


def export_tower(
    tower: nn.Module, features: Sequence[SparseInput], multi: set[str], path: Path
) -> tuple[ModelFile, ExportedTower]:
    """Exports one tower (per-feature ids/lengths -> ``vector`` ``batch x D``)."""
    module = ExportedTower(tower, [f.feature for f in features]).eval()
    inputs = sparse_specs(features)
    outputs = [TensorSpec("vector", "float32", ("batch", int(tower.output_dim)))]
    example = example_inputs(inputs, {f.feature: f.cardinality for f in features}, multi)
    return export_module(module, inputs, outputs, example, path), module
