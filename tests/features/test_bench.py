"""``recsys bench features`` runs on tiny settings against the real Redis and reports the
ratios, with every path's values equal to the baseline and Feast's training set equal to the
Polars join."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_features_benchmark_runs_and_reports_ratios(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "bench.json"
    argv = [
        "features_bench.py",
        "--users",
        "600",
        "--impressions",
        "3000",
        "--calls",
        "3",
        "--redis",
        redis_url,
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "benchmarks" / "features_bench.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ")
    result = json.loads(out.read_text())
    assert all(result["values_equal"].values())
    assert set(result["online"]) == {"1", "100", "500"}
    for sizes in result["online"].values():
        assert sizes["direct redis"]["ratio_p99"] == 1.0
        assert set(sizes) == {"direct redis", "fast redis", "feast redis", "feast sqlite"}
    assert sum(result["historical"]["mismatches"].values()) == 0
    assert result["historical"]["ratio_rows_per_s"] > 0
