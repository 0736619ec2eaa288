"""The README's commands, as a new user types them: every ``recsys`` command is one the CLI
knows, and every config-driven command composes and passes the schema (groups, keys, values)
exactly as written. The commands that need no external data also run, in tests/cli and
tests/notebooks, on tiny sizes."""

from __future__ import annotations

import re
import shlex

import pytest

from recsys.api import compose
from recsys.cli.main import _usage
from recsys.config.schema import validate

from .conftest import ROOT

COMMAND = re.compile(r"^ {4}(recsys .+?)(?:\s+#.*)?$")
CONFIGS = {
    "train": "train",
    "quickstart": "quickstart",
    "evaluate": "evaluate",
    "export": "export",
    "explore": "explore",
    "index": "index",
}


def readme_commands() -> list[list[str]]:
    lines = (ROOT / "README.md").read_text().splitlines()
    found = [COMMAND.match(line) for line in lines]
    return [shlex.split(m.group(1).rstrip("& "))[1:] for m in found if m]


def test_every_readme_command_is_a_command() -> None:
    usage = _usage()
    commands = readme_commands()
    assert len(commands) >= 20
    for args in commands:
        name = " ".join(args[:2]) if args[0] in ("bench", "index", "data") else args[0]
        assert re.search(rf"^\s+{re.escape(name)}\b", usage, re.M), name


@pytest.mark.parametrize(
    "args",
    [a for a in readme_commands() if a[0] in CONFIGS or a[:2] == ["data", "prepare"]],
    ids=lambda a: " ".join(a)[:60],
)
def test_readme_config_commands_compose(args: list[str]) -> None:
    if args[:2] in (["data", "prepare"], ["index", "build"]):
        config, overrides = ("train" if args[0] == "data" else "index"), args[2:]
    else:
        config, overrides = CONFIGS[args[0]], args[1:]
    overrides = [
        o.split(",")[0] if "," in o and "[" not in o else o  # a sweep: its first value
        for o in overrides
        if not o.startswith(("--", "hydra."))
    ]
    cfg = compose(config, overrides)
    if config in ("train", "quickstart"):
        validate(cfg)
        path = cfg.data.get("path")
        if path and str(path).startswith("../shared/"):
            assert (ROOT / path).exists() or not (ROOT.parent / "shared").exists(), path
