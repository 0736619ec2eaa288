"""Every benchmark at a size that fits a few minutes on 2 cores, in one report.

Run: ``recsys bench all [--out-dir benchmarks/results] [--only train,retrieval]``. Writes
``<out-dir>/<machine>-<date>.json`` (each benchmark's own figures), ``.md`` (the machine
line, then one table per benchmark: each measured figure of ours, of the baseline measured in
the same run, and their ratio) and the latency histograms of the inference and backend
benchmarks (``<machine>-<date>-<benchmark>-latency.png``). A benchmark that cannot run here
(no PostgreSQL / Redis for the backend,
no Redis for the feature store) is reported with its error; the others still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared bench_machine module
from bench_machine import cpu_model

HERE = Path(__file__).resolve().parent

#: The benchmarks that draw a latency histogram (``--plot FILE``).
PLOTS = ("inference", "backend")
#: (script, arguments of a small run) per benchmark.
SMALL: dict[str, tuple[str, list[str]]] = {
    "train": (
        "train_throughput.py",
        ["--steps", "20", "--warmup", "3", "--rows-per-table", "20000", "--batch-size", "1024"],
    ),
    "retrieval": (
        "retrieval_bench.py",
        ["--items", "50000", "--queries", "500", "--repeats", "3", "--budget", "1.0"],
    ),
    "inference": ("inference_bench.py", ["--candidates", "200", "--calls", "60"]),
    "backend": ("backend_bench.py", ["--followers", "1000", "--posts", "5", "--reads", "200"]),
    "features": (
        "features_bench.py",
        ["--users", "1000", "--impressions", "10000", "--calls", "30"],
    ),
    "distributed": (
        "distributed_bench.py",
        ["--rounds", "1", "--epochs", "1", "--serve-requests", "50"],
    ),
}


def _load_main(script: str) -> Callable[[list[str]], dict[str, Any]]:
    spec = importlib.util.spec_from_file_location(f"bench_{Path(script).stem}", HERE / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def machine_info() -> dict[str, Any]:
    """CPU model, cores, threads, GPU and the versions of the libraries measured."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = cpu_model()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    versions = {}
    for name in ("torch", "torchrec", "fbgemm-gpu-cpu", "faiss-cpu", "onnxruntime", "polars"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": versions,
    }


def _leaves(d: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested result, ``a/b/c`` names; lists of rows by their ``kind``."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if k != "machine":
                out.update(_leaves(v, f"{prefix}{k}/"))
    elif isinstance(d, list):
        for i, row in enumerate(d):
            name = row.get("kind", i) if isinstance(row, dict) else i
            out.update(_leaves(row, f"{prefix}{name}/"))
    elif isinstance(d, int | float) and not isinstance(d, bool):
        out[prefix.rstrip("/")] = float(d)
    return out


_FIGURE = re.compile(r"ratio|efficiency|per_s|qps|p50|p99|examples_per_sec|recall")


def figures(result: dict[str, Any]) -> list[tuple[str, float]]:
    """The figures of a benchmark worth a table row: ratios, rates, latencies, recall."""
    return [(k, v) for k, v in _leaves(result).items() if _FIGURE.search(k)]


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the machine line, then one table per benchmark."""
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        f"# Benchmarks, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, "
        f"GPU {m['gpu'] or 'none'}, Python {m['python']}; {versions}.",
        "",
        "Ratios compare ours with the baseline measured in the same run (see each "
        "benchmark's docstring for which way is better).",
    ]
    for name, entry in report["benchmarks"].items():
        shown = " ".join(a for a in entry["args"] if not a.endswith(".png"))
        lines += ["", f"## {name} ({entry['seconds']:.0f} s: `{shown}`)", ""]
        if "error" in entry:
            lines.append(f"not run: {entry['error']}")
            continue
        rows = figures(entry["result"])
        ratios = [(k, v) for k, v in rows if "ratio" in k]
        lines += ["| ratio (ours / baseline, same run) | value |", "| --- | ---: |"]
        lines += [f"| {k} | {v:,.4g} |" for k, v in ratios] + [""]
        lines += ["| figure (ours and baseline) | value |", "| --- | ---: |"]
        lines += [f"| {k} | {v:,.4g} |" for k, v in rows if "ratio" not in k]
        plot = next((Path(a) for a in entry["args"] if a.endswith(".png")), None)
        if plot is not None and plot.is_file():
            lines += ["", f"![{name} latency]({plot.name})"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--only", default=",".join(SMALL), help=f"comma list out of {list(SMALL)}")
    args = p.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n]
    unknown = sorted(set(chosen) - set(SMALL))
    if unknown:
        raise SystemExit(f"recsys bench all: unknown benchmark(s) {unknown}; known: {list(SMALL)}")
    report: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": machine_info(),
        "benchmarks": {},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", platform.node() or "machine")
    stem = args.out_dir / f"{host}-{report['date']}"
    for i, name in enumerate(chosen, 1):
        script, small = SMALL[name]
        if name in PLOTS:
            small = [*small, "--plot", str(stem.with_name(f"{stem.name}-{name}-latency.png"))]
        print(f"[{i}/{len(chosen)}] {name}: {script} {' '.join(small)}", flush=True)
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"script": script, "args": small}
        try:
            entry["result"] = _load_main(script)(list(small))
        except (Exception, SystemExit) as exc:  # one benchmark that cannot run here
            entry["error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: not run ({entry['error']})", file=sys.stderr, flush=True)
        entry["seconds"] = time.perf_counter() - t0
        report["benchmarks"][name] = entry
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    stem.with_suffix(".md").write_text(markdown(report))
    ran = [n for n, e in report["benchmarks"].items() if "error" not in e]
    print(f"benchmarks run: {', '.join(ran) or 'none'} of {', '.join(chosen)}")
    print(f"report: {stem.with_suffix('.md')}")
    print(f"figures: {stem.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    main()
