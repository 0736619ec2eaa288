"""The import direction of ARCHITECTURE.md, and a side-effect-free ``import recsys``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("pipelines", "serving", "benchmarks", "tests")


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_recsys_never_imports_outer_folders() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "recsys").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in OUTSIDE
    ]
    assert not offenders, offenders


def test_social_backend_never_imports_torch() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "serving" / "social").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in ("torch", "torchrec", "fbgemm_gpu")
    ]
    assert not offenders, offenders


def test_importing_recsys_starts_nothing_and_reads_no_env() -> None:
    code = (
        "import os, threading, recsys, recsys.types;"
        "assert threading.active_count() == 1, threading.enumerate();"
        "print('ok')"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_backend_runs_without_loading_torch() -> None:
    """Building the app, the workers and the CLI loads neither torch nor the library."""
    code = (
        "import sys; import serving.social.api as api, serving.social.workers, "
        "serving.social.cli, serving.social.demo; api.create_app();"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchrec', 'fbgemm_gpu', 'recsys'));"
        "assert not loaded, loaded; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_no_module_over_600_lines_outside_migrations() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for top in ("recsys", "serving", "pipelines")
        for path in (ROOT / top).rglob("*.py")
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 600
    ]
    assert not long, long


def test_every_package_says_what_lives_there() -> None:
    bare = [
        str(init.relative_to(ROOT))
        for top in ("recsys", "serving", "pipelines")
        for init in (ROOT / top).rglob("__init__.py")
        if len(ast.get_docstring(ast.parse(init.read_text())) or "") < 40
    ]
    assert not bare, bare
