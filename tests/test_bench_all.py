"""``recsys bench all``'s report: the machine line and one table per benchmark."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import ROOT


def _bench_all():
    spec = importlib.util.spec_from_file_location("bench_all", ROOT / "benchmarks" / "bench_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_has_the_machine_and_one_table_per_benchmark() -> None:
    bench = _bench_all()
    machine = bench.machine_info()
    assert machine["cores"] >= 1 and "torch" in machine["versions"]
    result = {
        "machine": {"cpus": 2},
        "baseline_examples_per_sec": 1000.0,
        "ours_examples_per_sec": 1500.0,
        "ratio_ours_over_baseline": 1.5,
        "indexes": [{"kind": "hnsw", "qps_ours": 10.0, "qps_raw": 9.0, "build_seconds": 1.0}],
        "steps": 20,
    }
    features = {  # the shape of features_bench.py's result
        "machine": {"cpus": 2},
        "online": {"500": {"feast redis": {"p50_ms": 2.0, "p99_ms": 3.0, "ratio_p99": 1.25}}},
        "historical": {"feast_rows_per_s": 5000.0, "ratio_rows_per_s": 0.5, "mismatches": {}},
    }
    assert set(bench.SMALL) == {
        "train",
        "retrieval",
        "inference",
        "backend",
        "features",
        "distributed",
    }
    report = {
        "date": "2026-01-01",
        "machine": machine,
        "benchmarks": {
            "train": {"args": ["--steps", "20"], "seconds": 3.0, "result": result},
            "backend": {"args": [], "seconds": 0.1, "error": "OperationalError: no server"},
            "features": {"args": ["--users", "1000"], "seconds": 9.0, "result": features},
        },
    }
    text = bench.markdown(report)
    assert text.startswith("# Benchmarks, 2026-01-01\n") and f"{machine['cores']} cores" in text
    assert "| ratio_ours_over_baseline | 1.5 |" in text
    assert "| indexes/hnsw/qps_ours | 10 |" in text and "build_seconds" not in text
    assert "## features" in text and "| online/500/feast redis/ratio_p99 | 1.25 |" in text
    assert "| historical/feast_rows_per_s | 5,000 |" in text
    assert "## backend" in text and "not run: OperationalError: no server" in text
    with pytest.raises(SystemExit, match="unknown benchmark"):
        bench.main(["--only", "warp"])
