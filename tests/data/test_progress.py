"""Progress lines: rate and time left, one line per update off a terminal."""

from __future__ import annotations

import logging

import pytest

from recsys.data.progress import Progress, format_line


def test_format_line_has_rate_and_time_left() -> None:
    line = format_line("epoch 1/2", 50, 200, "batches", 10.0, rate_unit="examples", rate_count=5e4)
    assert line == "epoch 1/2: 50/200 batches (25%), 5,000 examples/s, 0:00:30 left"
    resumed = format_line("epoch 1/2", 150, 200, "batches", 10.0, fresh=50)
    assert resumed.endswith("5 batches/s, 0:00:10 left")  # the pace of this process only
    assert format_line("rows", 10, None, "rows", 2.0) == "rows: 10 rows, 5 rows/s"


def test_off_a_terminal_each_update_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recsys.progress")
    progress = Progress(4, "build", unit="indexes", interval=0.0)  # pytest: not a terminal
    progress.update()
    progress.set_postfix(loss="0.5")
    progress.update(2)
    progress.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "recsys.progress"]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0].startswith("build: 1/4 indexes (25%)") and "left" in lines[0]
    assert lines[-1].startswith("build: 3/4 indexes") and lines[-1].endswith("loss 0.5")
    silent = Progress(4, "quiet", enabled=False, interval=0.0)
    silent.update(4)
    silent.close()
    assert not any("quiet" in r.getMessage() for r in caplog.records)
