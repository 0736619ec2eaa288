"""Fixtures for the CLI tests: isolated data and output roots, a clean Hydra."""

from __future__ import annotations

import pytest
from hydra.core.global_hydra import GlobalHydra


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """One data root (prepared caches are reused across tests) and one output root per
    session, and a fresh Hydra for each in-process ``recsys`` call."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(base / "data_root"))
    monkeypatch.setenv("RECSYS_OUTPUT_ROOT", str(base / "outputs"))
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()
