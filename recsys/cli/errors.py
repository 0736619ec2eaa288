"""How the ``recsys`` command reports an error: one line on stderr and exit status 1; the
traceback only with ``-v`` (:data:`STATE`)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from recsys.apps.console import quiet_libraries

__all__ = ["STATE", "command", "composition_message", "fail"]


@dataclass
class CliState:
    """Settings of this invocation of ``recsys`` (set by ``main`` from its arguments)."""

    verbose: bool = False
    prog: str = "recsys"


STATE = CliState()


def fail(prog: str, message: str) -> NoReturn:
    """Prints ``prog: error: message`` (one line, plus the ``-v`` hint) and exits with 1."""
    first = " ".join(message.split())
    print(f"{prog}: error: {first}  (recsys -v ... shows the traceback)", file=sys.stderr)
    raise SystemExit(1)


def composition_message(exc: BaseException) -> str:
    """A Hydra composition error as one sentence. Hydra's advice to append a misspelled
    override with ``+key`` is replaced by the keys that exist there."""
    from recsys.config.schema import known_keys_text

    cause = exc.__cause__ or exc
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    key = getattr(cause, "full_key", None)
    if key and text.startswith("Could not override"):
        text = f"unknown config key '{key}'{known_keys_text(cause)}"
    return text


def command(task: Callable[[Any], None]) -> Callable[[Any], None]:
    """Decorates a Hydra task function: with ``-v`` the libraries' log lines show (root at
    INFO after Hydra's logging set-up); an exception becomes :func:`fail`'s one line (named
    after ``STATE.prog``) unless ``-v``."""

    @functools.wraps(task)
    def run(cfg: Any) -> None:
        quiet_libraries(STATE.verbose)  # again: Hydra has just configured logging
        try:
            task(cfg)
        except Exception as exc:
            if STATE.verbose:
                raise
            fail(STATE.prog, str(exc) or type(exc).__name__)

    return run
