"""The scripted scenario on a live server (both storages), and the `recsys backend` commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from serving.social.demo import demo_command, free_port

REPO = Path(__file__).resolve().parents[3]
RECSYS = [sys.executable, "-c", "from recsys.cli.main import main; main()"]


def test_demo_scenario_on_a_live_server(backend_settings, capsys) -> None:
    result = demo_command(backend_settings, {"demo": {"threshold": 3}})
    out = capsys.readouterr().out
    assert result["feed"] == [result["star_post"], result["ben_post"]]
    assert result["media"]["status"] == "ready" and result["viewers"] == 2
    assert "at 24 h it is gone" in out and "demo: done" in out


def _run(*args: str, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RECSYS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_backend_help_and_config_errors() -> None:
    top = _run("--help")
    assert top.returncode == 0 and "backend" in top.stdout
    help_ = _run("backend", "--help")
    assert help_.returncode == 0 and "recsys backend serve" in help_.stdout
    cfg = _run("backend", "serve", "--cfg", "backend=production")
    assert cfg.returncode == 0 and "storage: production" in cfg.stdout
    assert "threshold: 100000" in cfg.stdout
    typo = _run("backend", "serve", "+backend.fanout.treshold=5")
    assert typo.returncode != 0 and "treshold" in typo.stderr
    unknown = _run("backend", "launch")
    assert unknown.returncode != 0 and "unknown command" in unknown.stderr


def test_serve_starts_on_either_storage(backend_settings, tmp_path) -> None:
    """`recsys backend serve` with no set-up on the embedded default (SQLite and blobs under
    data_dir), and with backend=production on PostgreSQL and Redis."""
    port = free_port()
    args = [f"backend.server.port={port}", f"backend.data_dir={tmp_path / 'data'}"]
    if backend_settings.storage == "production":
        args += [
            "backend=production",
            f"backend.postgres_url={backend_settings.postgres_url}",
            f"backend.redis_url={backend_settings.redis_url}",
            f"backend.redis_prefix={backend_settings.redis_prefix}",
        ]
    proc = subprocess.Popen(
        [*RECSYS, "backend", "serve", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    assert backend_settings.storage.encode() in r.read()
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not start: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as r:
            assert b"/v1/feed" in r.read()
        if backend_settings.storage == "embedded":
            assert (tmp_path / "data" / "social.sqlite3").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    printed = proc.stdout.read() if proc.stdout else ""
    assert "recsys backend: serving on" in printed and "alembic" not in printed, printed


def test_migrate_command(backend_settings) -> None:
    args = [
        "backend",
        "migrate",
        f"backend={backend_settings.storage}",
        f"backend.data_dir={backend_settings.data_dir}",
    ]
    if backend_settings.storage == "production":
        args.append(f"backend.postgres_url={backend_settings.postgres_url}")
    run = _run(*args)
    assert run.returncode == 0, run.stderr
    assert "schema at revision" in run.stdout
    assert "alembic" not in run.stderr, run.stderr  # its INFO lines only with -v
    verbose = _run("-v", *args)
    assert verbose.returncode == 0 and "INFO alembic" in verbose.stderr, verbose.stderr


def test_backend_benchmark_runs_and_reports_ratios(postgres_server_url, redis_url, tmp_path):
    """A tiny run of `recsys bench backend` (figures are not asserted: that is its job)."""
    out = tmp_path / "bench.json"
    run = _run(
        "bench",
        "backend",
        "--followers",
        "300",
        "--posts",
        "2",
        "--reads",
        "30",
        "--followees",
        "20",
        "--postgres-url",
        postgres_server_url,
        "--redis-url",
        redis_url,
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    import json

    report = json.loads(out.read_text())
    assert set(report["fanout_ratio_vs_raw"]) == {"timeline_push", "fanout_service"}
    assert report["feed_read_ms"]["feed_p99"] > 0 and report["followers"] == 300
