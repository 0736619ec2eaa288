"""The job's entry point (``key=value`` arguments).

    python -m pipelines.feature_sources synthetic out=DIR [apply=true] [n_users=1500 ...]
    python -m pipelines.feature_sources export export_dir=EXPORT out=DIR [apply=true]

``synthetic`` takes the fields of :class:`recsys.data.synthetic.SocialConfig` (``n_users``,
``n_impressions``, ``seed`` ...); ``export`` reads a ``python -m pipelines.social_events``
folder. Then, in ``pipelines/feature_repo`` (``out`` = its ``data`` folder), ``feast apply``
and ``feast materialize START END``; or train with ``data=feast_social data.path=DIR``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from pipelines.feature_sources.inputs import export_inputs, synthetic_inputs
from pipelines.feature_sources.job import FeatureData, write_feature_data
from recsys.data.synthetic import SocialConfig
from recsys.types import DataError

USAGE = "\n\n".join(__doc__.split("\n\n")[1:3])


def _options(args: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise SystemExit(f"pipelines.feature_sources: expected key=value, got {arg!r}\n{USAGE}")
        options[key] = value
    return options


def _flag(value: str, key: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise SystemExit(f"pipelines.feature_sources: {key} must be true or false, got {value!r}")
    return value.lower() in ("true", "1")


def _social_config(options: dict[str, str]) -> SocialConfig:
    fields = {f.name: f.type for f in dataclasses.fields(SocialConfig)}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            raise SystemExit(
                f"pipelines.feature_sources: unknown option {key!r}; SocialConfig fields: "
                f"{sorted(fields)}"
            )
        cast = float if fields[key] in (float, "float") else int
        try:
            values[key] = cast(value)
        except ValueError:
            raise SystemExit(
                f"pipelines.feature_sources: {key} must be a number, got {value!r}"
            ) from None
    return SocialConfig(**values)


def main(argv: Sequence[str] | None = None) -> FeatureData | None:
    """``python -m pipelines.feature_sources {synthetic|export} out=DIR [options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return None
    origin, options = args[0], _options(args[1:])
    out = options.pop("out", None)
    if not out:
        raise SystemExit(f"pipelines.feature_sources: out=DIR is required\n{USAGE}")
    apply = _flag(options.pop("apply", "true"), "apply")
    try:
        if origin == "synthetic":
            tables, labels = synthetic_inputs(_social_config(options))
        elif origin == "export":
            export_dir = options.pop("export_dir", None)
            if not export_dir or options:
                raise SystemExit(
                    f"pipelines.feature_sources: export takes export_dir=EXPORT (and out, "
                    f"apply) only, got {sorted(options) or 'no export_dir'}"
                )
            tables, labels = export_inputs(export_dir)
        else:
            raise SystemExit(f"pipelines.feature_sources: unknown origin {origin!r}\n{USAGE}")
        result = write_feature_data(tables, labels, out, apply=apply)
    except DataError as error:
        raise SystemExit(f"pipelines.feature_sources: {error}") from None
    print("\n".join(result.lines()), flush=True)
    return result
