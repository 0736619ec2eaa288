"""``python -m pipelines.social_traffic``: traffic through a real embedded backend, the same
traffic for the same seed, and clear errors for bad options and a reused name prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.social_events.cli import main as export_main
from pipelines.social_traffic.cli import main


def test_traffic_fills_the_backend_for_the_events_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = f"backend.data_dir={tmp_path / 'backend'}"
    summary = main([data, "users=12", "rounds=2", "seed=3"])
    assert summary is not None
    assert (summary.users, summary.posts, summary.impressions) == (12, 100, 12 * 2 * 5)
    assert summary.engagements > 0
    assert capsys.readouterr().out.strip() == summary.line()
    again = main([data, "users=12", "rounds=2", "seed=3", "prefix=other"])
    assert again is not None and again.engagements == summary.engagements  # same seed, same
    exported = export_main([data, f"out_dir={tmp_path / 'events'}"])
    assert exported is not None and exported.rows == 2 * 12 * 2 * 5


def test_bad_options_are_refused(tmp_path: Path) -> None:
    data = f"backend.data_dir={tmp_path / 'backend'}"
    with pytest.raises(SystemExit, match="users must be int"):
        main([data, "users=many"])
    with pytest.raises(SystemExit, match="users >= 10"):
        main([data, "users=3"])
    main([data, "users=10", "rounds=1"])
    with pytest.raises(SystemExit, match=r"pipelines\.social_traffic: "):
        main([data, "users=10", "rounds=1"])  # user000 exists: another prefix is needed
