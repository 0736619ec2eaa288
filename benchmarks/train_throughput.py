"""Training throughput: our trainer (with our Parquet loader) vs a minimal plain TorchRec loop.

The same DLRM shape for both: 26 sparse tables of dimension 64, 13 dense features, bottom MLP
512-256-64, top MLP 512-256-1, batch 2048, row-wise Adagrad on the embeddings and Adagrad on
the dense part, on synthetic Criteo-shaped data, in one process with the same thread count.

(a) ours: ``recsys.models.dlrm.DLRM`` on a ``FusedEmbeddingBagCollection``, trained by
    ``recsys.train.Trainer`` reading batches from Parquet through ``ParquetBatchLoader``
    (background prefetch), i.e. the whole path a user runs;
(a') ours with native embeddings: the same as (a) but on
    ``recsys.modules.native_embedding.NativeFusedEmbeddingBagCollection`` (row-wise Adagrad
    fused into backward in plain PyTorch ops instead of fbgemm's CPU kernel), selected by
    ``--sparse-kernel native`` (or ``both``, the default, which measures (a) and (a'));
(a'') ours with native embeddings and ``trainer.precision=bf16`` (autocast of the dense layers,
    AMX / AVX512-BF16 on CPUs that have them): mixed precision, so not the same arithmetic as
    the fp32 baseline; printed separately (``--no-bf16`` skips it);
(b) baseline: TorchRec's own ``torchrec.models.dlrm.DLRM`` with
    ``apply_optimizer_in_backward(RowWiseAdagrad)`` under ``DistributedModelParallel``
    (world size 1, gloo), fed batches already materialized in memory: TorchRec's reference
    recipe with data loading for free.

Also measured: the loader alone (rows/s), to check it is at least 10x faster than training
consumes. Run: ``python benchmarks/train_throughput.py`` or ``recsys bench train``.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: with the default active waiting, 2 OpenMP threads next to any other
# busy thread (our prefetching loader, another process) run FBGEMM's backward 30-50x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.data.loader import ParquetBatchLoader
from recsys.models.dlrm import DLRM
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.train.tasks.ranking import RankingTask
from recsys.train.trainer import EarlyStoppingConfig, Trainer, TrainerConfig
from recsys.types import FeatureSpec, SparseFeature

NUM_DENSE, NUM_SPARSE, DIM = 13, 26, 64
BOTTOM, TOP = [512, 256, 64], [512, 256]
SPARSE_LR, DENSE_LR = 0.05, 0.01


def make_data(
    folder: Path, rows: int, rows_per_table: int, seed: int = 0, skew: bool = True
) -> FeatureSpec:
    """Criteo-shaped synthetic rows (skewed ids, log-normal counts) in prepared Parquet."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {"label": (rng.random(rows) < 0.25).astype(np.float32)}
    for i in range(NUM_DENSE):
        cols[f"I{i + 1}"] = rng.standard_normal(rows).astype(np.float32)
    for i in range(NUM_SPARSE):
        # Zipf-like popularity, as in click logs.
        if skew:
            ids = (rng.pareto(1.2, rows) * rows_per_table / 50).astype(np.int64) % rows_per_table
        else:
            ids = rng.integers(0, rows_per_table, rows)
        cols[f"C{i + 1}"] = ids
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), folder / "part-00000.parquet", row_group_size=131072)
    return FeatureSpec(
        dense=tuple(f"I{i + 1}" for i in range(NUM_DENSE)),
        sparse=tuple(SparseFeature(f"C{i + 1}", rows_per_table) for i in range(NUM_SPARSE)),
        labels=("label",),
    )


def loader_rows_per_sec(files: list[Path], spec: FeatureSpec, batch: int) -> float:
    loader = ParquetBatchLoader(files, spec, batch, shuffle=True, seed=0, prefetch=2)
    t0 = time.perf_counter()
    rows = sum(len(b) for b in loader)
    return rows / (time.perf_counter() - t0)


def ours(
    files: list[Path],
    spec: FeatureSpec,
    batch: int,
    warmup: int,
    steps: int,
    kernel: str = "fbgemm",
    precision: str = "fp32",
) -> float:
    torch.manual_seed(0)
    tables = embedding_tables(spec, EmbeddingConfig(dim=DIM))
    emb = build_embeddings(
        tables,
        fused=True,
        optimizer={"type": "rowwise_adagrad", "lr": SPARSE_LR},
        kernel=kernel,
    )
    model = DLRM(spec, emb, bottom_mlp=BOTTOM, top_mlp=TOP)
    cfg = TrainerConfig(
        precision=precision,
        batch_size=batch,
        max_steps=warmup,
        progress=False,
        log_every_steps=10_000,
        early_stopping=EarlyStoppingConfig(enabled=False),
    )
    trainer = Trainer(
        model,
        cfg,
        task=RankingTask(spec.labels),
        dense_optimizer=lambda p: torch.optim.Adagrad(p, lr=DENSE_LR),
    )
    train = ParquetBatchLoader(files, spec, batch, shuffle=True, seed=0, prefetch=2)
    trainer.fit(train)
    seen, secs = trainer.state.examples, trainer.state.train_seconds
    cfg.max_steps = warmup + steps
    trainer.fit(train)
    return (trainer.state.examples - seen) / (trainer.state.train_seconds - secs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline(files: list[Path], spec: FeatureSpec, batch: int, warmup: int, steps: int) -> float:
    """TorchRec's reference DLRM recipe on one CPU process (world size 1, gloo)."""
    import torch.distributed as dist
    from torch.distributed.optim import (
        _apply_optimizer_in_backward as apply_optimizer_in_backward,
    )
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
    from torchrec.distributed import DistributedModelParallel
    from torchrec.models.dlrm import DLRM as TorchRecDLRM
    from torchrec.optim.keyed import KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter
    from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=0, world_size=1)
    torch.manual_seed(0)
    tables = [
        EmbeddingBagConfig(
            name=f"t_{f.name}",
            embedding_dim=DIM,
            num_embeddings=f.cardinality,
            feature_names=[f.name],
        )
        for f in spec.sparse
    ]
    model = TorchRecDLRM(
        embedding_bag_collection=EmbeddingBagCollection(tables=tables, device=torch.device("meta")),
        dense_in_features=NUM_DENSE,
        dense_arch_layer_sizes=BOTTOM,
        over_arch_layer_sizes=[*TOP, 1],
    )
    apply_optimizer_in_backward(RowWiseAdagrad, model.sparse_arch.parameters(), {"lr": SPARSE_LR})
    model = DistributedModelParallel(module=model, device=torch.device("cpu"))
    dense_opt = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(model.named_parameters())),
        lambda params: torch.optim.Adagrad(params, lr=DENSE_LR),
    )
    # The same rows as ours, materialized up front: loading costs the baseline nothing.
    batches = []
    for b in ParquetBatchLoader(files, spec, batch, shuffle=True, seed=0, prefetch=0):
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=b.sparse.keys(),
            values=b.sparse.values().clone(),
            lengths=b.sparse.lengths().clone(),
        )
        batches.append((b.dense.clone(), kjt, b.labels.squeeze(-1).clone()))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(i: int) -> None:
        dense, kjt, labels = batches[i % len(batches)]
        dense_opt.zero_grad()
        logits = model(dense, kjt).squeeze(-1)
        loss_fn(logits, labels).backward()
        dense_opt.step()

    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    rate = steps * batch / (time.perf_counter() - t0)
    dist.destroy_process_group()
    return rate


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=60, help="timed steps per trainer")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rows-per-table", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument(
        "--sparse-kernel",
        choices=("fbgemm", "native", "both"),
        default="both",
        help="fused embedding kernel(s) of our trainer: fbgemm's TBE, native PyTorch ops, or both",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time ours with native kernels and trainer.precision=bf16 (AMX/AVX512-BF16)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    rows = (args.warmup + args.steps) * args.batch_size
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        folder = Path(tmp) / "train"
        spec = make_data(folder, rows, args.rows_per_table)
        files = sorted(folder.glob("*.parquet"))
        loader_rate = loader_rows_per_sec(files, spec, args.batch_size)
        timed = (args.batch_size, args.warmup, args.steps)
        ours_rate = native_rate = None
        if args.sparse_kernel in ("fbgemm", "both"):
            ours_rate = ours(files, spec, *timed)
        if args.sparse_kernel in ("native", "both"):
            native_rate = ours(files, spec, *timed, kernel="native")
        bf16_rate = None
        if args.bf16:
            bf16_rate = ours(files, spec, *timed, kernel="native", precision="bf16")
        base_rate = baseline(files, spec, args.batch_size, args.warmup, args.steps)
    consumed = max(r for r in (ours_rate, native_rate, bf16_rate) if r is not None)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": threads,
            "processor": platform.processor(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "model": {
            "tables": NUM_SPARSE,
            "dim": DIM,
            "dense": NUM_DENSE,
            "bottom": BOTTOM,
            "top": [*TOP, 1],
            "batch_size": args.batch_size,
            "rows_per_table": args.rows_per_table,
        },
        "steps": args.steps,
        "sparse_kernel": args.sparse_kernel,
        "baseline_examples_per_sec": base_rate,
        "loader_rows_per_sec": loader_rate,
        "loader_over_training": loader_rate / consumed,
    }
    if ours_rate is not None:
        result["ours_examples_per_sec"] = ours_rate
        result["ratio_ours_over_baseline"] = ours_rate / base_rate
    if native_rate is not None:
        result["ours_native_examples_per_sec"] = native_rate
        result["ratio_ours_native_over_baseline"] = native_rate / base_rate
    if ours_rate is not None and native_rate is not None:
        result["ratio_ours_native_over_ours"] = native_rate / ours_rate
    if bf16_rate is not None:
        result["ours_native_bf16_examples_per_sec"] = bf16_rate
        result["ratio_ours_native_bf16_over_baseline"] = bf16_rate / base_rate
    print(
        f"machine: {result['machine']['cpus']} cpus, torch threads {threads}, "
        f"gpu {result['machine']['gpu']}"
    )
    print(
        f"loader (Parquet -> KJT batches): {loader_rate:,.0f} rows/s "
        f"= {loader_rate / consumed:.1f}x what our trainer consumes"
    )
    if ours_rate is not None:
        print(f"ours (recsys Trainer + loader):  {ours_rate:,.0f} examples/s")
    if native_rate is not None:
        print(f"ours (native row-wise Adagrad embeddings): {native_rate:,.0f} examples/s")
    print(f"baseline (plain TorchRec DMP):   {base_rate:,.0f} examples/s")
    if ours_rate is not None:
        print(f"ratio ours / baseline:           {ours_rate / base_rate:.3f}")
    if native_rate is not None:
        print(f"ratio ours (native) / baseline:  {native_rate / base_rate:.3f}")
    if ours_rate is not None and native_rate is not None:
        print(f"ratio ours (native) / ours:      {native_rate / ours_rate:.3f}")
    if bf16_rate is not None:
        print(
            f"ours (native, bf16 autocast):    {bf16_rate:,.0f} examples/s, "
            f"ratio / baseline (fp32) {bf16_rate / base_rate:.3f}  [mixed precision: not the "
            "same arithmetic as the baseline]"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
        print(f"figures: {args.out}")
    return result


if __name__ == "__main__":
    main()
