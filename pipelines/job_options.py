"""The ``key=value`` options of a job's entry point, apart from the backend's Hydra overrides.

Example::

    options, overrides = split_options(["users=60", "backend=production"], {"users": int}, "job")
    # ({'users': 60}, ['backend=production'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["split_options"]


def split_options(
    argv: Sequence[str], types: Mapping[str, type], job: str
) -> tuple[dict[str, Any], list[str]]:
    """``(options, overrides)``: the arguments ``key=value`` whose key is in ``types``, cast
    to its type, and everything else (Hydra overrides of the backend's config), in order.

    Raises:
        SystemExit: a value that does not cast, naming the job, the key and the value.
    """
    options: dict[str, Any] = {}
    overrides: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in types:
            try:
                options[key] = types[key](value)
            except ValueError:
                raise SystemExit(
                    f"{job}: {key} must be {types[key].__name__}, got {value!r}"
                ) from None
        else:
            overrides.append(arg)
    return options, overrides
