"""What a user sees on the console: no library chatter, one line per error, a real log file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recsys.apps.console import LibraryNoise, quiet_libraries
from recsys.cli.errors import STATE
from recsys.config.schema import ConfigError

from ..conftest import shared_data
from ..recsys_command import run_recsys

TINY = [
    "train",
    "experiment=dlrm_movielens_tiny",
    f"data.path={shared_data('ml-100k')}",
    "trainer.max_steps=4",
    "~baseline",
]


def test_known_library_lines_are_dropped_unless_verbose() -> None:
    def record(name: str, msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    quiet = LibraryNoise()
    assert not quiet.filter(record("torch.fx._symbolic_trace", "is_fx_tracing will return true"))
    assert not quiet.filter(record("root", "Could not determine LOCAL_WORLD_SIZE from env"))
    assert not quiet.filter(record("mlflow.store.db.utils", "Updating database", logging.INFO))
    # other warnings of the same loggers, and errors, stay
    assert quiet.filter(record("torch.fx._symbolic_trace", "something else"))
    assert quiet.filter(record("mlflow.store.db.utils", "migration failed", logging.ERROR))
    assert LibraryNoise(verbose=True).filter(record("root", "Could not determine LOCAL_WORLD"))
    quiet_libraries()
    quiet_libraries()  # idempotent: one filter per logger
    torch_logger = logging.getLogger("torch.fx._symbolic_trace")
    assert sum(isinstance(f, LibraryNoise) for f in torch_logger.filters) == 1


def test_a_run_prints_no_library_lines_and_keeps_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECSYS_OUTPUT_ROOT", str(tmp_path / "fresh"))  # a new MLflow database
    run_dir = tmp_path / "run"
    run_recsys([*TINY, f"hydra.run.dir={run_dir}"])
    out, err = capfd.readouterr()
    console = out + err
    assert "mlflow" not in console.lower() and "is_fx_tracing" not in console, console
    assert out.strip().splitlines()[-1] == f"metrics: {run_dir / 'metrics.json'}"
    assert not (run_dir / "tasks.log").exists()
    log = (run_dir / "recsys.log").read_text()
    assert f"metrics: {run_dir / 'metrics.json'}" in log


def test_an_error_is_one_line_and_verbose_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [*TINY[:2], "data.path=no_such_folder", f"hydra.run.dir={tmp_path / 'r'}"]
    with pytest.raises(SystemExit) as exit_info:
        run_recsys(bad)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("recsys train: error: data.path 'no_such_folder'")
    try:
        with pytest.raises(ConfigError):
            run_recsys(["-v", *bad])
    finally:
        STATE.verbose = False
        quiet_libraries()


def test_a_misspelled_override_lists_the_known_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for override in ("trainer.batch_sise=3", "+trainer.batch_sise=3"):
        with pytest.raises(SystemExit):
            run_recsys([*TINY, override, f"hydra.run.dir={tmp_path / 'r'}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "unknown config key 'trainer.batch_sise'" in err[0] and "batch_size" in err[0]
        assert "+trainer" not in err[0]  # no advice that leads to a second error


def ctr_table_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *extra: str):
    """``recsys train data=ctr_table`` on a CSV of ``text`` that must fail: (file, stderr)."""
    table = tmp_path / "log.csv"
    table.write_text(text)
    args = ["train", "data=ctr_table", f"data.path={table}", "model=dcn", *extra]
    with pytest.raises(SystemExit):
        run_recsys([*args, f"hydra.run.dir={tmp_path / 'r'}"])
    return table, capsys.readouterr().err


def test_a_misspelled_key_of_a_data_config_is_an_unknown_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, err = ctr_table_error(tmp_path, capsys, "ad,click\nx,1\ny,0\n", "+data.source.sparce=[ad]")
    assert "unknown config key 'data.source.sparce'" in err and "sparse" in err
    assert "unexpected keyword" not in err


def test_a_header_only_table_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, err = ctr_table_error(tmp_path, capsys, "ad,click\n", "data.source.sparse=[ad]")
    assert "produced no rows" in err and str(table) in err
