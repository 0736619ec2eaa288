"""Inference: ranking N candidates for one user by four paths, in one run on one machine.

Paths (the same trained ranker export, the same 500 candidate rows of raw features):

- (a) **eager**: the trained PyTorch model, ``sigmoid(model(dense, KJT))`` under
  ``torch.no_grad`` on pre-built tensors;
- (b) **bare ORT**: ``onnxruntime.InferenceSession.run`` on pre-built feeds (the baseline);
- (c) **ours**: :class:`serving.inference.ranker.OnnxRanker` from raw features as the HTTP
  layer calls it, ``score(candidates, shared=user)``: the user's features once (``user_id``
  and the other user-level features, ``--user-features``), each candidate's own features per
  row (request-time preprocessing with the manifest's vocabularies and statistics, then the
  session);
- (d) **HTTP**: ``POST /rank`` of a real ``recsys serve`` process (uvicorn, one keep-alive
  connection; the body ``{"user_id", "user", "candidates"}`` is encoded once, the reply is
  decoded).

The candidate rows are sampled from the run's raw data, their user-level features set to the
first row's (one user's request), so every path scores the same rows.

Timed calls alternate between the paths in rounds, so neighbours in time share the machine's
load. Reported: p50/p99 latency and candidates/s per path, the p99 ratios (c)/(b)
(``ratio_ours_over_bare_ort``) and (d)/(b) (``ratio_http_over_bare_ort``), eager/bare ORT, and
batch-size scaling (1, 64, 500, 2000) of (a), (b) and (c). Aims of issue #10: (c)/(b) <= 1.1,
(d) p99 <= 10 ms on 2 cores, ORT faster than eager.

Without ``--run-dir`` it trains the tiny multi-task social ranker first (about half a minute)
and exports it. Run: ``recsys bench inference [--run-dir RUN] [--out FILE]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared bench_machine module
from bench_machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 64, 500, 2000)
#: User-level raw features of the synthetic social app (the backend's ``Viewer`` plus
#: ``user_activity``); those the model reads go to the shared argument.
USER_FEATURES = ("user_id", "country", "age_bucket", "user_follow_count_log", "user_activity")


def machine(threads: int) -> dict[str, Any]:
    model = cpu_model()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "gpus": torch.cuda.device_count(),
        "load_average_at_start": os.getloadavg()[0],
    }


def _recsys(args: list[str]) -> None:
    from hydra.core.global_hydra import GlobalHydra

    from recsys.cli.main import main

    GlobalHydra.instance().clear()
    try:
        main(args)
    finally:
        GlobalHydra.instance().clear()


def trained_run(work: Path) -> Path:
    """Trains and exports the tiny multi-task social ranker under ``work``."""
    os.environ.setdefault("RECSYS_DATA_ROOT", str(work / "data"))
    os.environ.setdefault("RECSYS_OUTPUT_ROOT", str(work / "outputs"))
    run = work / "run"
    _recsys(
        [
            "train",
            "experiment=multitask_social_tiny",
            "tracking.enabled=false",
            f"hydra.run.dir={run}",
        ]
    )
    return run


def ensure_export(run: Path) -> Path:
    if not (run / "export" / "manifest.json").is_file():
        _recsys(["export", f"export.run_dir={run}", "export.register=false"])
    return run / "export"


def eager_model(run: Path) -> tuple[torch.nn.Module, Any]:
    """The trained model of a ranker run (on CPU) and its prepared data set."""
    from omegaconf import OmegaConf

    from recsys.config.export import export_request

    cfg = OmegaConf.create({"export": {"run_dir": str(run)}})
    request = export_request(cfg)
    assert request.dataset is not None and request.model is not None
    dataset = request.dataset()
    model = request.model(dataset.spec)
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    return model.eval(), dataset


def candidate_rows(
    dataset: Any, n: int, seed: int, user_features: tuple[str, ...]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(user, candidates)``: the first sampled raw row's ``user_features`` (those the data
    has) and ``n`` raw rows of the data set without them (one user's request)."""
    raw = pl.read_parquet(sorted((dataset.root / "raw").glob("*.parquet")))
    schema = dataset.preprocessor().schema
    cols = [*schema.dense, *schema.sparse, *schema.multi]
    rows = raw.select(cols).sample(n, with_replacement=n > raw.height, seed=seed).to_dicts()
    user = {k: v for k, v in rows[0].items() if k in user_features}
    return user, [{k: v for k, v in r.items() if k not in user} for r in rows]


def eager_inputs(dataset: Any, rows: list[dict[str, Any]]) -> tuple[torch.Tensor, Any]:
    """Pre-built eager inputs of ``rows`` (training pipeline transform + the loader's KJT)."""
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    spec = dataset.spec
    frame = dataset.preprocessor().transform(pl.DataFrame(rows, infer_schema_length=None))
    dense = torch.from_numpy(frame.select(spec.dense).to_numpy().astype(np.float32))
    values, lengths = [], []
    for f in spec.sparse:
        col = frame[f.name]
        if f.multi_hot:
            lists = col.to_list()
            lengths.append(np.asarray([len(v) for v in lists], np.int32))
            values.append(np.asarray([x for v in lists for x in v], np.int64))
        else:
            lengths.append(np.ones(len(col), np.int32))
            values.append(col.to_numpy().astype(np.int64))
    kjt = KeyedJaggedTensor(
        keys=spec.sparse_names,
        values=torch.from_numpy(np.concatenate(values)),
        lengths=torch.from_numpy(np.concatenate(lengths)),
    )
    return dense, kjt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``recsys serve`` process and one keep-alive connection to it."""

    def __init__(self, export: Path, threads: int) -> None:
        self.port = _free_port()
        cmd = [sys.executable, "-c", "from recsys.cli.main import main; main()", "serve"]
        cmd += [f"serve.run_dir={export}", f"serve.port={self.port}", f"serve.threads={threads}"]
        cmd += ["serve.reload_interval_s=0", "serve.max_candidates=5000"]
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("recsys serve did not start") from None
                time.sleep(0.3)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def rank(self, body: bytes) -> list[float]:
        self.conn.request("POST", "/rank", body, {"Content-Type": "application/json"})
        reply = self.conn.getresponse()
        data = json.loads(reply.read())
        if reply.status != 200:
            raise RuntimeError(f"/rank answered {reply.status}: {data}")
        return data["scores"]

    def close(self) -> None:
        self.conn.close()
        self.process.terminate()
        self.process.wait(timeout=20)


def interleaved(paths: dict[str, Callable[[], object]], calls: int) -> dict[str, np.ndarray]:
    """Seconds of ``calls`` calls of each path, one call of each per round (order rotates)."""
    for fn in paths.values():  # warm-up
        for _ in range(5):
            fn()
    names = list(paths)
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(calls):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            paths[name]()
            out[name].append(time.perf_counter() - t0)
    return {n: np.asarray(v) for n, v in out.items()}


def summary(seconds: np.ndarray, rows: int) -> dict[str, float]:
    p50, p99 = np.percentile(seconds, [50, 99])
    return {
        "p50_ms": float(p50 * 1e3),
        "p99_ms": float(p99 * 1e3),
        "mean_ms": float(seconds.mean() * 1e3),
        "candidates_per_s": float(rows / np.median(seconds)),
        "calls": len(seconds),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="a trained ranker run (exported "
        "here if it has no export/); default: train the tiny social ranker",
    )
    p.add_argument("--candidates", type=int, default=500)
    p.add_argument("--calls", type=int, default=300, help="timed calls per path")
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--user-features",
        default=",".join(USER_FEATURES),
        help="comma-separated user-level raw features, sent once per request (shared)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="a latency histogram PNG here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    info = machine(args.threads)
    print(
        f"machine: {info['cpus']} cpus ({info['cpu_model']}), {args.threads} thread(s) for torch "
        f"and ONNX Runtime, torch {info['torch']}, onnxruntime {info['onnxruntime']} "
        f"{info['providers']}, gpus {info['gpus']}, load average "
        f"{info['load_average_at_start']:.2f}",
        flush=True,
    )
    from serving.inference.preprocess import PreprocessSettings
    from serving.inference.ranker import OnnxRanker, RankerSettings
    from serving.inference.session import SessionSettings

    with tempfile.TemporaryDirectory(prefix="inference-bench-") as tmp:
        run = args.run_dir or trained_run(Path(tmp))
        export = ensure_export(run)
        model, dataset = eager_model(run)
        settings = RankerSettings(
            session=SessionSettings(intra_op_num_threads=args.threads),
            preprocess=PreprocessSettings(max_rows=max(BATCHES)),
        )
        ranker = OnnxRanker.load(export, settings)
        user, cands_all = candidate_rows(
            dataset, max(BATCHES), args.seed, tuple(args.user_features.split(","))
        )
        n = args.candidates
        cands = cands_all[:n]
        rows = [{**user, **c} for c in cands]  # what the eager and bare ORT paths get
        feeds = ranker.preprocessor.transform(rows)
        shared_feeds = ranker.preprocessor.transform(cands, user)
        assert all(np.array_equal(feeds[k], shared_feeds[k]) for k in feeds)
        dense, kjt = eager_inputs(dataset, rows)
        with torch.no_grad():
            eager = torch.sigmoid(model(dense, kjt)).numpy()
        got = np.stack([ranker.run(feeds)[t] for t in ranker.tasks], axis=1)
        parity = float(np.abs(got - eager).max())
        request = {"user": {k: v for k, v in user.items() if k != "user_id"}, "candidates": cands}
        if "user_id" in user:
            request["user_id"] = user["user_id"]
        body = json.dumps(request).encode()
        print(
            f"model: {ranker.manifest.model['class']} ({export}), {n} candidates of one user, "
            f"max |ORT - eager| {parity:.1e}; request body {len(body) / 1024:.0f} KiB\n"
            f"ours: OnnxRanker.score(candidates, shared=user): user features sent once "
            f"{sorted(user)}, per candidate {sorted(cands[0])}; HTTP: POST /rank of the same",
            flush=True,
        )
        server = Server(export, args.threads)
        try:
            expected = ranker.values(ranker.score(cands, user))
            assert np.allclose(server.rank(body), expected, atol=1e-6)

            def eager_call() -> object:
                with torch.no_grad():
                    return torch.sigmoid(model(dense, kjt))

            times = interleaved(
                {
                    "eager": eager_call,
                    "bare_ort": lambda: ranker.session.run(None, feeds),
                    "ours": lambda: ranker.score(cands, user),
                    "http": lambda: server.rank(body),
                },
                args.calls,
            )
        finally:
            server.close()
        paths = {name: summary(t, n) for name, t in times.items()}
        if args.plot:
            from recsys.train.plots import latency_histogram_plot

            ms = {name: np.asarray(t) * 1e3 for name, t in times.items()}
            title = f"ranking {n} candidates: latency per call"
            print(f"latency histogram: {latency_histogram_plot(ms, args.plot, title)}")
        print(f"{'path':<9} {'p50 ms':>8} {'p99 ms':>8} {'cand/s':>11}")
        for name, s in paths.items():
            print(
                f"{name:<9} {s['p50_ms']:>8.3f} {s['p99_ms']:>8.3f} {s['candidates_per_s']:>11,.0f}"
            )
        b = paths["bare_ort"]
        ratios = {
            "ratio_ours_over_bare_ort": paths["ours"]["p99_ms"] / b["p99_ms"],
            "ratio_http_over_bare_ort": paths["http"]["p99_ms"] / b["p99_ms"],
            "ratio_ours_over_bare_ort_p50": paths["ours"]["p50_ms"] / b["p50_ms"],
            "ratio_http_over_bare_ort_p50": paths["http"]["p50_ms"] / b["p50_ms"],
            "ratio_eager_over_bare_ort_p50": paths["eager"]["p50_ms"] / b["p50_ms"],
        }
        print(
            f"p99 ratios: ours/bare ORT {ratios['ratio_ours_over_bare_ort']:.2f} (aim <= 1.1), "
            f"HTTP/bare ORT {ratios['ratio_http_over_bare_ort']:.2f}; HTTP p99 "
            f"{paths['http']['p99_ms']:.2f} ms (aim <= 10); eager/bare ORT p50 "
            f"{ratios['ratio_eager_over_bare_ort_p50']:.2f} (> 1: ORT faster)",
            flush=True,
        )
        scaling = {}
        print(f"{'batch':>6} {'eager p50':>10} {'ORT p50':>9} {'ours p50':>9} {'ours/ORT':>9}")
        for size in BATCHES:
            part = cands_all[:size]
            f = ranker.preprocessor.transform(part, user)
            d, k = eager_inputs(dataset, [{**user, **c} for c in part])

            def eager_part(d=d, k=k) -> object:
                with torch.no_grad():
                    return model(d, k)

            calls = max(20, min(args.calls, 20_000 // size))
            t = interleaved(
                {
                    "eager": eager_part,
                    "bare_ort": lambda f=f: ranker.session.run(None, f),
                    "ours": lambda part=part: ranker.score(part, user),
                },
                calls,
            )
            scaling[str(size)] = {name: summary(v, size) for name, v in t.items()}
            s = scaling[str(size)]
            print(
                f"{size:>6} {s['eager']['p50_ms']:>10.3f} {s['bare_ort']['p50_ms']:>9.3f} "
                f"{s['ours']['p50_ms']:>9.3f} "
                f"{s['ours']['p50_ms'] / s['bare_ort']['p50_ms']:>9.2f}",
                flush=True,
            )
    result = {
        "machine": info,
        "candidates": n,
        "parity_max_abs_diff": parity,
        "paths": paths,
        "p99_ms": {name: s["p99_ms"] for name, s in paths.items()},
        **ratios,
        "batch_scaling": scaling,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
        print(f"figures: {args.out}")
    return result


if __name__ == "__main__":
    main()
