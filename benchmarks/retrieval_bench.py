"""Retrieval indexes: recall@10 against exact search, queries/s, build time and memory per
index kind, and our wrapper's overhead against raw FAISS calls, all in one run.

For each kind (``flat``, ``ivf_flat``, ``hnsw``, ``ivf_pq``, ``ivf_rq``, at the documented
defaults of ``recsys.retrieval.index.IndexConfig``) on the same synthetic item vectors:

- build (train + add) through ``VectorIndex.build``, timed;
- recall@10 of the index against the exact top 10 (the ``flat`` index) on the same queries;
- queries/s of (a) ours, ``VectorIndex.search`` (input checks, batching, id mapping) and (b)
  the baseline, raw ``faiss_index.search`` on the very same FAISS object, queries and batch
  size, in the same process and thread count. Timed passes alternate (a)/(b), the best pass of
  each gives its queries/s; ``ours/raw`` is the median over adjacent pairs of passes of
  raw time / our time (1.0 = no overhead, 0.9 = ours 10% slower);
- memory: the FAISS index's serialized size plus the id array.

The items are a mixture of Gaussians on the unit sphere (cluster centres, then anisotropic
noise with a decaying spectrum, then L2-normalized): clustered like learned embeddings, where
uniform random vectors would make every ANN index look artificially bad. Queries are fresh
draws from the same mixture.

Run: ``python benchmarks/retrieval_bench.py`` (1M x 64, a few minutes on 2 cores, HNSW's
build the longest) or ``recsys bench retrieval --items 20000`` (seconds).
"""

from __future__ import annotations

import os

# Before FAISS loads OpenMP: with the default active waiting, 2 OpenMP threads next to any
# other busy process run 30-50x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from recsys.retrieval.index import (
    DEFAULT_BATCH_SIZE,
    KINDS,
    IndexConfig,
    VectorIndex,
)
from recsys.retrieval.index_report import evaluate_index

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared bench_machine module
from bench_machine import cpu_model


def clustered_vectors(
    n: int, dim: int, clusters: int, spread: float, seed: int = 0, chunk: int = 262_144
) -> np.ndarray:
    """``n x dim`` float32 unit vectors drawn from a mixture of ``clusters`` Gaussians.

    Centres are uniform on the sphere; each point adds noise of total scale ``spread`` whose
    spectrum decays as ``j ** -0.5`` over a random basis, then is normalized.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scales = np.arange(1, dim + 1, dtype=np.float32) ** -0.5
    scales *= spread / np.sqrt((scales**2).sum())
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    mix = (scales[:, None] * basis.T).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32) @ mix
        block += centres[rng.integers(0, clusters, stop - start)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def time_ours_vs_raw(
    index: VectorIndex, queries: np.ndarray, k: int, batch: int, repeats: int, budget_s: float
) -> dict[str, float]:
    """Seconds of full passes over ``queries``, ours and raw FAISS alternating (who goes first
    flips every pair). The overhead ratio is the median over pairs of raw/ours time: paired
    neighbours in time share the machine's load (others' jobs on a shared box)."""
    raw = index.faiss_index

    def ours() -> None:
        index.search(queries, k, batch_size=batch)

    def baseline() -> None:
        for start in range(0, len(queries), batch):
            raw.search(queries[start : start + batch], k)

    ours()  # warm-up (page in the index, spin up threads)
    baseline()
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    t_start = time.perf_counter()
    for i in range(repeats):
        order = [("ours", ours), ("raw", baseline)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if i >= 1 and time.perf_counter() - t_start > budget_s:
            break
    pairs = np.asarray(times["raw"]) / np.asarray(times["ours"])
    return {
        "ratio_ours_over_raw": float(np.median(pairs)),
        "ours_seconds": min(times["ours"]),
        "raw_seconds": min(times["raw"]),
        "ours_median_seconds": float(np.median(times["ours"])),
        "raw_median_seconds": float(np.median(times["raw"])),
        "passes": len(times["ours"]),
    }


def machine() -> dict:
    model = cpu_model()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "faiss_threads": faiss.omp_get_max_threads(),
        "faiss_version": faiss.__version__,
        "gpus": faiss.get_num_gpus(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_at_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="queries per FAISS call"
    )
    p.add_argument("--clusters", type=int, default=None, help="default: items / 100")
    p.add_argument("--spread", type=float, default=0.7, help="noise scale around a centre")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list out of {KINDS}")
    p.add_argument("--repeats", type=int, default=9, help="timed pairs of passes, at most")
    p.add_argument("--budget", type=float, default=8.0, help="seconds of timing per kind")
    p.add_argument("--threads", type=int, default=None, help="FAISS threads (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        p.error(f"unknown kind {unknown[0]!r}; known: {list(KINDS)}")
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    clusters = args.clusters or max(1, args.items // 100)
    info = machine()
    print(
        f"machine: {info['cpus']} cpus ({info['cpu_model']}), faiss {info['faiss_version']} "
        f"with {info['faiss_threads']} threads, gpus {info['gpus']}, "
        f"OMP_WAIT_POLICY={info['omp_wait_policy']}, "
        f"load average {info['load_average_at_start']:.2f}"
    )

    t0 = time.perf_counter()
    data = clustered_vectors(args.items + args.queries, args.dim, clusters, args.spread, args.seed)
    items, queries = data[: args.items], data[args.items :]
    rng = np.random.default_rng(args.seed + 1)  # non-contiguous int64 ids, as in a catalogue
    ids = np.sort(rng.choice(50 * args.items, args.items, replace=False)).astype(np.int64)
    rng.shuffle(ids)
    print(
        f"data: {args.items:,} items x {args.dim} ({clusters} clusters, spread {args.spread}, "
        f"unit norm), {args.queries} queries, k={args.k}, batch {args.batch_size} "
        f"[{time.perf_counter() - t0:.1f}s]"
    )

    exact = VectorIndex.build(items, ids, IndexConfig(kind="flat"))
    exact_ids = exact.search(queries, args.k, batch_size=args.batch_size)[1]
    header = (
        f"{'kind':<9} {'recall@10':>9} {'build s':>8} {'memory MB':>10} {'B/item':>7} "
        f"{'qps ours':>9} {'qps raw':>9} {'ours/raw':>9}"
    )
    print(header)
    rows = []
    for kind in kinds:
        index = exact if kind == "flat" else VectorIndex.build(items, ids, IndexConfig(kind=kind))
        report = evaluate_index(index, exact_ids, queries, args.k, batch_size=args.batch_size)
        timing = time_ours_vs_raw(
            index, queries, args.k, args.batch_size, args.repeats, args.budget
        )
        qps_ours = args.queries / timing["ours_seconds"]
        qps_raw = args.queries / timing["raw_seconds"]
        row = {
            **report.to_dict(),
            **timing,
            "qps_ours": qps_ours,
            "qps_raw": qps_raw,
            "bytes_per_item": report.memory_bytes / report.ntotal,
        }
        rows.append(row)
        print(
            f"{kind:<9} {report.recall_at_k:>9.4f} {report.build_seconds:>8.1f} "
            f"{report.memory_bytes / 2**20:>10.1f} {row['bytes_per_item']:>7.1f} "
            f"{qps_ours:>9,.0f} {qps_raw:>9,.0f} {row['ratio_ours_over_raw']:>9.3f}",
            flush=True,
        )
        if index is not exact:
            del index
            gc.collect()
    result = {
        "machine": info,
        "data": {
            "items": args.items,
            "dim": args.dim,
            "queries": args.queries,
            "k": args.k,
            "batch_size": args.batch_size,
            "clusters": clusters,
            "spread": args.spread,
            "seed": args.seed,
        },
        "indexes": rows,
        "seconds": time.perf_counter() - t0,
    }
    worst = min(rows, key=lambda r: r["ratio_ours_over_raw"]) if rows else None
    if worst is not None:
        print(
            f"lowest ours/raw: {worst['ratio_ours_over_raw']:.3f} ({worst['kind']}); "
            f"total {result['seconds']:.0f}s"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
        print(f"figures: {args.out}")
    return result


if __name__ == "__main__":
    main()
