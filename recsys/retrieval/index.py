"""A typed wrapper over FAISS for inner-product search over item vectors with int64 item ids.

Five kinds (:attr:`IndexConfig.kind`), all scoring by inner product (higher is better); the
wrapper does not normalize and does not assume normalized vectors (two-tower outputs usually
are, which makes inner product the cosine):

- ``flat``: ``IndexFlatIP``, exact; the reference the others are measured against.
- ``ivf_flat``: ``IndexIVFFlat`` over a flat coarse quantizer; ``nprobe=64``.
- ``hnsw``: ``IndexHNSWFlat``, ``M=16``, ``efConstruction=40``; ``efSearch=128``.
- ``ivf_pq``: ``IndexIVFPQ`` (PQ32x8 on residuals), then ``IndexRefine`` re-scores the best
  ``k * k_factor`` (8) candidates on fp16 copies of the vectors; ``nprobe=64``.
- ``ivf_rq``: the hierarchical residual index: a coarse centroid, then 32 residual codebooks of
  16 entries (``IndexIVFResidualQuantizerFastScan``, RQ32x4, greedy encoding), then the same
  fp16 refine; ``nprobe=64``.

At these defaults every ANN kind reaches recall@10 0.977-0.980 of exact search on 1M
clustered 64-d unit vectors (``benchmarks/retrieval_bench.py``, which also reports qps, build
time and memory). The compressed kinds need their refine stage for that: alone, PQ32x8 gives
~0.85 and RQ32x4 ~0.6; ``refine="sq8"`` halves the refine memory and loses ~0.015 recall.
``nlist`` defaults to ``4 * sqrt(N)`` (at most N/39), trained on a random sample of
``64 * nlist`` vectors; ``nprobe`` above ``nlist`` is clamped to it. Ids are unique int64 >= 0.

Results: :meth:`VectorIndex.search` returns ``min(k, ntotal)`` columns, best first; a slot the
index could not fill (an ANN index finds fewer than ``k`` in the lists it probed) holds id
``-1`` and score ``-inf``. Inputs are checked: floating-point vectors (float16 and float64 are
cast to float32, integer arrays are rejected), 2-D, the index's dimension, finite values.

Example::

    index = VectorIndex.build(item_vecs, item_ids, IndexConfig(kind="hnsw"))   # N x D, N
    scores, ids = index.search(user_vecs, k=100)                             # Q x 100 each
    index.save("data/index/items")            # index.faiss + ids.npy + config.json
    report = evaluate_index(index, exact_ids, user_vecs, k=10)   # exact_ids: Q x 10 from flat

The GPU path (faiss-gpu, chosen at run time) is isolated in :mod:`recsys.retrieval.index_gpu`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from recsys.retrieval import index_gpu

KINDS = ("flat", "ivf_flat", "hnsw", "ivf_pq", "ivf_rq")
IVF_KINDS = ("ivf_flat", "ivf_pq", "ivf_rq")
REFINES = ("auto", "none", "flat", "fp16", "sq8")
FORMAT, FORMAT_VERSION = "recsys.vector_index", 1
INDEX_FILE, IDS_FILE, CONFIG_FILE = "index.faiss", "ids.npy", "config.json"
# FAISS scores exhaustively (flat index, IVF coarse quantizer) with BLAS only for batches of
# at least distance_compute_blas_threshold / D queries (2000 at D=64 in FAISS 1.15); smaller
# batches take a path ~6x slower at 1M items.
DEFAULT_BATCH_SIZE = 4096
# Vectors used to train the fast-scan residual codebooks (FAISS would take up to 1024*16*M).
RQ_ENCODER_TRAIN_POINTS = 65_536
_IP = faiss.METRIC_INNER_PRODUCT
# FAISS prints "please provide at least N training points" (to stderr, from C++) once per
# codebook when k-means gets fewer than 39 points per centroid; we say it once per setting.
_ADVISED_POINTS_PER_CENTROID = 39
_advised: set[tuple[str, int, int]] = set()
log = logging.getLogger(__name__)
# The IndexConfig fields that shape each kind (reported in VectorIndex.params).
_KIND_FIELDS = {
    "flat": (),
    "ivf_flat": ("nprobe",),
    "hnsw": ("hnsw_m", "ef_construction", "ef_search"),
    "ivf_pq": ("nprobe", "pq_m", "pq_bits"),
    "ivf_rq": ("nprobe", "rq_m", "rq_bits", "rq_fast_scan", "rq_beam_size"),
}


class IndexFormatError(ValueError):
    """A saved index folder is unreadable or inconsistent (names the file at fault)."""


def _check_int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class IndexConfig:
    """What to build and how to search it. Fields that do not apply to ``kind`` are ignored.

    ``refine="auto"`` means ``"fp16"`` for ``ivf_pq`` / ``ivf_rq`` and ``"none"`` otherwise;
    ``use_gpu="auto"`` moves supported kinds to a GPU when FAISS sees one. ``name`` only labels
    reports (defaults to ``kind``). Only ``metric="ip"`` (inner product) is supported.
    ``rq_fast_scan=False`` builds ``IndexIVFResidualQuantizer`` (any ``rq_bits``; slower search:
    FAISS recomputes the lookup table for every probed list).
    """

    kind: str = "flat"
    name: str | None = None
    metric: str = "ip"
    nlist: int | None = None
    nprobe: int = 64
    hnsw_m: int = 16
    ef_construction: int = 40
    ef_search: int = 128
    pq_m: int = 32
    pq_bits: int = 8
    rq_m: int = 32
    rq_bits: int = 4
    rq_fast_scan: bool = True
    rq_beam_size: int = 1
    refine: str = "auto"
    refine_k_factor: int = 8
    train_size: int | None = None
    seed: int = 0
    use_gpu: str | bool = "auto"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"IndexConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.metric != "ip":
            raise ValueError(f"IndexConfig.metric: only 'ip' is supported, got {self.metric!r}")
        if self.refine not in REFINES:
            raise ValueError(f"IndexConfig.refine must be one of {REFINES}, got {self.refine!r}")
        if self.kind == "flat" and self.refine not in ("auto", "none"):
            raise ValueError("IndexConfig.refine: a flat index is exact and takes no refine stage")
        if self.use_gpu not in ("auto", True, False):
            raise ValueError(
                f"IndexConfig.use_gpu must be 'auto', true or false, got {self.use_gpu!r}"
            )
        positive = {
            "nprobe": self.nprobe,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "pq_m": self.pq_m,
            "rq_m": self.rq_m,
            "rq_beam_size": self.rq_beam_size,
            "refine_k_factor": self.refine_k_factor,
            "pq_bits": self.pq_bits,
            "rq_bits": self.rq_bits,
        }
        for name, value in positive.items():
            _check_int(f"IndexConfig.{name}", value, 1)
            if name.endswith("_bits") and value > 16:
                raise ValueError(f"IndexConfig.{name} must be at most 16, got {value}")
        _check_int("IndexConfig.hnsw_m", self.hnsw_m, 2)
        _check_int("IndexConfig.nlist", self.nlist, 1, optional=True)
        _check_int("IndexConfig.train_size", self.train_size, 1, optional=True)
        _check_int("IndexConfig.seed", self.seed, 0)
        if self.kind == "ivf_rq" and self.rq_fast_scan and self.rq_bits != 4:
            raise ValueError("IndexConfig.rq_fast_scan needs rq_bits=4 (set rq_fast_scan=false)")

    @property
    def resolved_refine(self) -> str:
        """The refine stage actually built: ``none``, ``flat``, ``fp16`` or ``sq8``."""
        if self.refine != "auto":
            return self.refine
        return "fp16" if self.kind in ("ivf_pq", "ivf_rq") else "none"

    @property
    def label(self) -> str:
        """``name``, else ``kind``: how reports and saved folders call this index."""
        return self.name or self.kind

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IndexConfig:
        """From a plain mapping (config file, ``config.json``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown IndexConfig key {unknown[0]!r}; known: {sorted(known)}")
        return cls(**values)


def _as_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``N x D`` array with finite values, or a clear error."""
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{what} must be floating point (float32; float16/float64 are cast), got {arr.dtype}"
        )
    if arr.ndim != 2:
        hint = " (a single vector: pass x[None, :])" if arr.ndim == 1 else ""
        raise ValueError(f"{what} must be a 2-D array N x D, got shape {arr.shape}{hint}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, the index has dimension {dim}")
    if 0 in arr.shape:
        raise ValueError(f"{what} is empty (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(
            f"{what} row {bad[0]} has a non-finite value (NaN or inf, or out of float32 range); "
            f"{len(bad)} such rows"
        )
    return arr


def _as_ids(ids: Any, n: int, what: str = "ids") -> np.ndarray:
    """``ids`` as ``n`` unique non-negative int64 values, or a clear error."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers (int64), got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},) (one per vector), got {arr.shape}")
    if arr.dtype.kind == "u" and n and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{what} must fit in int64, got {arr.max()}")
    arr = arr.astype(np.int64, copy=True)
    if n and arr.min() < 0:
        pos = int(np.argmax(arr < 0))
        raise ValueError(f"{what} must be >= 0 (-1 marks an empty result); {arr[pos]} at {pos}")
    ordered = np.sort(arr)
    dup = ordered[1:] == ordered[:-1]
    if dup.any():
        raise ValueError(f"{what} must be unique; id {ordered[1:][dup][0]} appears more than once")
    return arr


def _sizes(cfg: IndexConfig, n: int) -> tuple[int | None, int]:
    """``(nlist, train_size)`` for ``n`` vectors; ``(None, 0)`` for kinds that train nothing."""
    if cfg.kind not in IVF_KINDS:
        return None, 0
    target = cfg.nlist if cfg.nlist is not None else max(1, round(4 * math.sqrt(n)))
    train_n = min(n, cfg.train_size if cfg.train_size is not None else 64 * target)
    nlist = cfg.nlist if cfg.nlist is not None else max(1, min(target, train_n // 39))
    if nlist > train_n:
        raise ValueError(
            f"IndexConfig.nlist={nlist} needs at least as many training vectors, "
            f"got {train_n} (N={n}, train_size={cfg.train_size})"
        )
    bits = {"ivf_pq": cfg.pq_bits, "ivf_rq": cfg.rq_bits}.get(cfg.kind)
    if bits is not None and train_n < 2**bits:
        raise ValueError(
            f"kind {cfg.kind!r} with {bits}-bit codebooks needs at least {2**bits} "
            f"training vectors, got {train_n}"
        )
    return nlist, train_n


def _make_faiss_index(cfg: IndexConfig, d: int, nlist: int | None) -> tuple[faiss.Index, list]:
    """An empty FAISS index for ``cfg``, and the sub-indexes Python must keep alive."""
    parts: list[faiss.Index] = []
    if cfg.kind == "flat":
        base: faiss.Index = faiss.IndexFlatIP(d)
    elif cfg.kind == "hnsw":
        base = faiss.IndexHNSWFlat(d, cfg.hnsw_m, _IP)
        base.hnsw.efConstruction = cfg.ef_construction
    else:
        assert nlist is not None
        quantizer = faiss.IndexFlatIP(d)
        parts.append(quantizer)
        if cfg.kind == "ivf_flat":
            base = faiss.IndexIVFFlat(quantizer, d, nlist, _IP)
        elif cfg.kind == "ivf_pq":
            if d % cfg.pq_m:
                raise ValueError(f"IndexConfig.pq_m={cfg.pq_m} must divide the dimension {d}")
            base = faiss.IndexIVFPQ(quantizer, d, nlist, cfg.pq_m, cfg.pq_bits, _IP)
        else:
            rq_class = (
                faiss.IndexIVFResidualQuantizerFastScan
                if cfg.rq_fast_scan
                else faiss.IndexIVFResidualQuantizer
            )
            lut = faiss.AdditiveQuantizer.ST_LUT_nonorm  # no norms: inner product needs none
            base = rq_class(quantizer, d, nlist, cfg.rq_m, cfg.rq_bits, _IP, lut)
            base.rq.max_beam_size = cfg.rq_beam_size
            if cfg.rq_fast_scan:
                base.max_train_points = RQ_ENCODER_TRAIN_POINTS
    refine = cfg.resolved_refine
    if refine == "none":
        return base, parts
    if refine == "flat":
        stage: faiss.Index = faiss.IndexFlatIP(d)
    else:
        qtype = faiss.ScalarQuantizer.QT_fp16 if refine == "fp16" else faiss.ScalarQuantizer.QT_8bit
        stage = faiss.IndexScalarQuantizer(d, qtype, _IP)
    parts += [base, stage]
    return faiss.IndexRefine(base, stage), parts


def _advise_codebook_training(cfg: IndexConfig, base: faiss.Index, train_n: int) -> None:
    """Silences FAISS's k-means warning (one line per codebook, from C++) of an IVF index
    trained on fewer than 39 points per centroid (its coarse lists, PQ/RQ codebooks) and logs
    it once per (kind, points, centroids) instead."""
    if cfg.kind not in IVF_KINDS:
        return
    ivf = faiss.downcast_index(faiss.extract_index_ivf(base))
    stages = [("coarse quantizer", ivf.cp, ivf.nlist)]
    if cfg.kind == "ivf_pq":
        stages.append(("PQ codebooks", ivf.pq.cp, 2**cfg.pq_bits))
    elif cfg.kind == "ivf_rq":
        stages.append(("RQ codebooks", ivf.rq.cp, 2**cfg.rq_bits))
    for what, params, centroids in stages:
        params.min_points_per_centroid = 1
        advised = _ADVISED_POINTS_PER_CENTROID * centroids
        key = (f"{cfg.kind} {what}", train_n, centroids)
        if train_n < advised and key not in _advised:
            _advised.add(key)
            message = "%s %s trained on %d vectors for %d centroids (FAISS advises %d)"
            log.warning(message + "; recall may drop", cfg.kind, what, train_n, centroids, advised)


def _apply_search_params(index: faiss.Index, cfg: IndexConfig) -> None:
    """Set nprobe / efSearch / k_factor from ``cfg`` on a CPU index (built or loaded)."""
    base = index
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(cfg.refine_k_factor)
        base = faiss.downcast_index(index.base_index)
    if cfg.kind in IVF_KINDS:
        # Clamped: FAISS 1.15's IVF fast scan returns wrong or missing results when nprobe is
        # far above nlist (e.g. 64 probes of 7 lists); the others clamp it themselves.
        ivf = faiss.downcast_index(faiss.extract_index_ivf(base))
        ivf.nprobe = min(cfg.nprobe, ivf.nlist)
    elif cfg.kind == "hnsw":
        base.hnsw.efSearch = cfg.ef_search


def _serialized_bytes(index: faiss.Index) -> int:
    """Bytes FAISS writes for ``index``, counted without keeping them."""
    sizes: list[int] = []
    writer = faiss.PyCallbackIOWriter(lambda chunk: sizes.append(len(chunk)) or len(chunk))
    faiss.write_index(index, writer)
    del writer  # flushes the last chunk
    return sum(sizes)


class VectorIndex:
    """A FAISS index plus the int64 item id of each stored vector and the config it came from.

    Build with :meth:`build`, reopen with :meth:`load`. FAISS stores vectors at positions
    ``0..ntotal-1``; ``ids[position]`` is the item id, mapped back in :meth:`search`.
    """

    def __init__(
        self,
        index: faiss.Index,
        ids: np.ndarray,
        config: IndexConfig,
        *,
        build_seconds: float = 0.0,
        nlist: int | None = None,
        train_size: int = 0,
        parts: list | None = None,
    ) -> None:
        """Wrap a CPU FAISS ``index`` (trained, holding ``len(ids)`` vectors); prefer
        :meth:`build` / :meth:`load`. Moves it to a GPU when ``config.use_gpu`` says so."""
        if index.ntotal != len(ids):
            raise ValueError(f"the FAISS index holds {index.ntotal} vectors but {len(ids)} ids")
        self.config = config
        self.build_seconds = float(build_seconds)
        self.nlist = nlist
        self.train_size = train_size
        self._ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._parts = parts or []
        self._gpu_resources: Any = None
        self._memory: int | None = None
        self.on_gpu = index_gpu.resolve_use_gpu(config.use_gpu, config.kind, config.resolved_refine)
        if self.on_gpu:
            self._parts.append(index)
            index, self._gpu_resources = index_gpu.to_gpu(index)
        self._index = index

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def build(cls, vectors: Any, ids: Any = None, config: IndexConfig | None = None) -> VectorIndex:
        """Train (IVF kinds, on a random sample) and fill an index.

        ``vectors``: ``N x D`` floating point, ``N >= 1``; ``ids``: ``N`` unique non-negative
        integers (default ``0..N-1``). Build time is kept in :attr:`build_seconds`.
        """
        cfg = config if config is not None else IndexConfig()
        x = _as_matrix(vectors, "vectors")
        n, d = x.shape
        id_arr = np.arange(n, dtype=np.int64) if ids is None else _as_ids(ids, n)
        t0 = time.perf_counter()
        nlist, train_n = _sizes(cfg, n)
        index, parts = _make_faiss_index(cfg, d, nlist)
        _advise_codebook_training(cfg, index, train_n)
        if not index.is_trained:
            if train_n < n:
                rng = np.random.default_rng(cfg.seed)
                index.train(x[np.sort(rng.choice(n, train_n, replace=False))])
            else:
                index.train(x)
        index.add(x)
        _apply_search_params(index, cfg)
        seconds = time.perf_counter() - t0
        return cls(
            index, id_arr, cfg, build_seconds=seconds, nlist=nlist, train_size=train_n, parts=parts
        )

    def add(self, vectors: Any, ids: Any = None) -> None:
        """Append ``N x D`` vectors with ``N`` new unique ids (default: after the largest id).
        Nothing changes when the input is rejected."""
        x = _as_matrix(vectors, "vectors", self.dim)
        if ids is None:
            start = int(self._ids.max()) + 1 if len(self._ids) else 0
            id_arr = np.arange(start, start + len(x), dtype=np.int64)
        else:
            id_arr = _as_ids(ids, len(x))
            clash = np.isin(id_arr, self._ids)
            if clash.any():
                raise ValueError(f"ids already in the index: {id_arr[clash][:5].tolist()}")
        self._index.add(x)
        self._ids = np.concatenate([self._ids, id_arr])
        self._memory = None

    # -- search ------------------------------------------------------------------------------

    def search(
        self, queries: Any, k: int, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product: ``queries`` ``Q x D`` -> ``(scores, ids)``, each
        ``Q x min(k, ntotal)`` (float32, int64), best first; empty slots are ``(-inf, -1)``.

        Queries go to FAISS ``batch_size`` rows at a time (FAISS parallelizes within a batch).
        """
        _check_int("k", k, 1)
        _check_int("batch_size", batch_size, 1)
        if self.ntotal == 0:
            raise ValueError("search on an empty index (it holds no vectors)")
        q = _as_matrix(queries, "queries", self.dim)
        kk = min(int(k), self.ntotal)
        nq = len(q)
        scores = np.empty((nq, kk), dtype=np.float32)
        labels = np.empty((nq, kk), dtype=np.int64)
        for start in range(0, nq, batch_size):
            stop = min(start + batch_size, nq)
            self._index.search(q[start:stop], kk, D=scores[start:stop], I=labels[start:stop])
        missing = labels < 0
        out_ids = self._ids[np.maximum(labels, 0)]
        out_ids[missing] = -1
        scores[missing] = -np.inf
        return scores, out_ids

    # -- facts -------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def ids(self) -> np.ndarray:
        """Item id of each stored vector (read-only view), ``ntotal``."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def faiss_index(self) -> faiss.Index:
        """The FAISS object itself (its ``search`` returns positions, not item ids)."""
        return self._index

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        where = "gpu" if self.on_gpu else "cpu"
        return f"VectorIndex(kind={self.kind!r}, ntotal={self.ntotal}, dim={self.dim}, {where})"

    def memory_bytes(self) -> int:
        """Bytes held: the FAISS index's serialized size (codes, vectors, graph, centroids,
        codebooks -- what it keeps in memory, give or take allocator slack) plus the ids."""
        if self._memory is None:
            cpu = index_gpu.to_cpu(self._index) if self.on_gpu else self._index
            self._memory = _serialized_bytes(cpu) + self._ids.nbytes
        return self._memory

    @property
    def params(self) -> dict[str, Any]:
        """The effective settings of this index (resolved nlist, refine ...)."""
        values = self.config.to_dict()
        out: dict[str, Any] = {"kind": self.kind, "device": "gpu" if self.on_gpu else "cpu"}
        out.update({name: values[name] for name in _KIND_FIELDS[self.kind]})
        if self.kind in IVF_KINDS:
            out.update(nlist=self.nlist, train_size=self.train_size)
        if self.config.resolved_refine != "none":
            out.update(
                refine=self.config.resolved_refine, refine_k_factor=values["refine_k_factor"]
            )
        return out

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path/`` = ``index.faiss`` + ``ids.npy`` + ``config.json``, atomically: the
        files go to a temporary sibling folder that is then renamed over ``path``. An existing
        ``path`` is replaced only if it is empty or a saved index."""
        path = Path(path)
        if path.exists() and not (
            path.is_dir() and ((path / CONFIG_FILE).is_file() or not any(path.iterdir()))
        ):
            raise FileExistsError(f"{path} exists and is not a saved index; not replacing it")
        path.parent.mkdir(parents=True, exist_ok=True)
        cpu = index_gpu.to_cpu(self._index) if self.on_gpu else self._index
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "dim": self.dim,
            "ntotal": self.ntotal,
            "nlist": self.nlist,
            "train_size": self.train_size,
            "build_seconds": self.build_seconds,
            "faiss_version": faiss.__version__,
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            faiss.write_index(cpu, str(tmp / INDEX_FILE))
            np.save(tmp / IDS_FILE, self._ids, allow_pickle=False)
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.rename(path, old / "index")
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> VectorIndex:
        """Reopen a folder written by :meth:`save`. A missing folder or file raises
        ``FileNotFoundError``; an unreadable or inconsistent one :class:`IndexFormatError`."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no saved vector index at {path} (not a folder)")
        for name in (CONFIG_FILE, INDEX_FILE, IDS_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"saved vector index {path} lacks {name}")
        try:
            meta = json.loads((path / CONFIG_FILE).read_text())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {meta.get('version')!r}, need {FORMAT_VERSION}")
            config = IndexConfig.from_dict(meta["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise IndexFormatError(f"{path / CONFIG_FILE}: {e}") from e
        try:
            ids = np.load(path / IDS_FILE, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise IndexFormatError(f"{path / IDS_FILE}: unreadable ({e})") from e
        if ids.ndim != 1 or ids.dtype != np.int64:
            raise IndexFormatError(
                f"{path / IDS_FILE}: need 1-D int64, got {ids.dtype} {ids.shape}"
            )
        try:
            index = faiss.read_index(str(path / INDEX_FILE))
        except RuntimeError as e:
            raise IndexFormatError(f"{path / INDEX_FILE}: FAISS cannot read it ({e})") from e
        if index.ntotal != len(ids) or index.d != meta.get("dim"):
            raise IndexFormatError(
                f"{path}: {INDEX_FILE} holds {index.ntotal} vectors of dimension {index.d} but "
                f"{IDS_FILE} has {len(ids)} ids and {CONFIG_FILE} says dimension {meta.get('dim')}"
            )
        if index.metric_type != _IP:
            raise IndexFormatError(f"{path / INDEX_FILE}: not an inner-product index")
        _apply_search_params(index, config)
        return cls(
            index,
            ids,
            config,
            build_seconds=float(meta.get("build_seconds", 0.0)),
            nlist=meta.get("nlist"),
            train_size=int(meta.get("train_size", 0)),
        )


# -- evaluation ------------------------------------------------------------------------------
