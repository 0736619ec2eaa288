"""The OpenAPI document is the contract: a bounded schemathesis run (every check, a fixed seed)
against a live server on the production storage (PostgreSQL + Redis) reports zero failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.social.api import create_app
from tests.serving.social.api.helpers import PASSWORD, jpeg
from tests.serving.social.api.live import live_server

#: Test cases per operation (all phases: examples, coverage, fuzzing, stateful) and the seed:
#: under a minute on two cores.
MAX_EXAMPLES = int(os.environ.get("RECSYS_SCHEMATHESIS_EXAMPLES", "40"))
SEED = 15
CONFIG = Path(__file__).with_name("schemathesis.toml")


def _seed_world(base: str) -> str:
    """Two users who follow each other, posts, a ready image and a story; returns a token."""
    tokens = []
    for name in ("contract_a", "contract_b"):
        body = {"username": name, "password": PASSWORD}
        tokens.append(httpx.post(f"{base}/v1/auth/register", json=body).json()["token"])
    a, b = ({"Authorization": f"Bearer {t}"} for t in tokens)
    ids = [httpx.get(f"{base}/v1/users/me", headers=h).json()["id"] for h in (a, b)]
    httpx.put(f"{base}/v1/users/{ids[1]}/follow", headers=a)
    httpx.put(f"{base}/v1/users/{ids[0]}/follow", headers=b)
    for i in range(3):
        httpx.post(f"{base}/v1/posts", json={"caption": f"seed {i}"}, headers=b)
    files = {"file": ("seed.jpg", jpeg(), "image/jpeg")}
    media = httpx.post(f"{base}/v1/media", files=files, headers=a).json()["id"]
    for _ in range(100):
        if httpx.get(f"{base}/v1/media/{media}", headers=a).json()["status"] == "ready":
            break
    httpx.post(f"{base}/v1/stories", json={"media_id": media}, headers=a)
    return tokens[0]


@pytest.mark.parametrize("storage_kind", ["production"])
def test_schemathesis_finds_no_failure(make_backend, tmp_path: Path) -> None:
    if shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("schemathesis is not installed (pip install -e .[test])")
    limits = {"capacity": 100_000, "refill_per_s": 10_000}
    backend = make_backend(
        {
            "rate_limits": {
                "enabled": True,
                **{b: limits for b in ("reads", "writes", "uploads", "auth")},
            },
            "server": {"poll_interval_s": 0.05},
        }
    )
    app = create_app(backend=backend, start_workers=True)
    with live_server(app) as (host, port):
        base = f"http://{host}:{port}"
        token = _seed_world(base)
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--header",
            f"Authorization: Bearer {token}",
            "--no-color",
            "--request-timeout",
            "30",
            # logout would revoke the run's one token (it has its own test in api/)
            "--exclude-path",
            "/v1/auth/logout",
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert phase in summary, summary  # every phase ran
    assert "Authentication failed" not in run.stdout, summary
    print(summary)  # shown with -s: operations, phases, test cases generated
