"""The only place that touches faiss-gpu: choosing the device and moving an index to and from it.

Chosen at run time, never at import time. With the CPU wheel (``faiss-cpu``)
``faiss.get_num_gpus()`` is 0 and nothing here goes past :func:`gpu_count`. The GPU path is
not exercised by the CPU test suite; it is kept small on purpose:

- only the kinds whose FAISS index has a GPU twin move: ``flat`` (GpuIndexFlatIP),
  ``ivf_flat`` (GpuIndexIVFFlat) and ``ivf_pq`` without a refine stage (GpuIndexIVFPQ);
  HNSW, IVF-RQ and refined indexes stay on the CPU;
- the index is built (trained, filled) on the CPU and cloned to GPU 0 afterwards;
- saving and measuring memory go through a CPU copy (:func:`to_cpu`).
  FAISS's GPU limits apply on the GPU (k and nprobe at most 2048).
"""

from __future__ import annotations

from typing import Any

import faiss

GPU_KINDS = frozenset({"flat", "ivf_flat", "ivf_pq"})


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    return int(faiss.get_num_gpus())


def supports_gpu(kind: str, refine: str) -> bool:
    """Whether an index of this kind (and refine stage) has a FAISS GPU implementation."""
    return kind in GPU_KINDS and refine == "none"


def resolve_use_gpu(use_gpu: str | bool, kind: str, refine: str) -> bool:
    """Decide the device: ``"auto"`` -> GPU when one exists and the kind supports it;
    ``True`` -> GPU or a clear error; ``False`` -> CPU."""
    if use_gpu is False:
        return False
    available = gpu_count() > 0 and hasattr(faiss, "StandardGpuResources")
    supported = supports_gpu(kind, refine)
    if use_gpu == "auto":
        return available and supported
    if not available:
        raise RuntimeError(
            "IndexConfig.use_gpu=True but FAISS sees no GPU (faiss-cpu installed, or no device); "
            "use use_gpu='auto' to fall back to the CPU"
        )
    if not supported:
        raise RuntimeError(
            f"IndexConfig.use_gpu=True but kind {kind!r} with refine {refine!r} has no FAISS GPU "
            f"implementation; GPU kinds: {sorted(GPU_KINDS)} without refine"
        )
    return True


def to_gpu(index: faiss.Index, device: int = 0) -> tuple[faiss.Index, Any]:
    """Clone a CPU index to a GPU. Returns ``(gpu_index, resources)``; keep ``resources``
    alive as long as ``gpu_index``."""
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, device, index), resources


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index (for saving or measuring its size)."""
    return faiss.index_gpu_to_cpu(index)
