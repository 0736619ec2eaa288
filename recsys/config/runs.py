"""Opening the config of a finished run folder (``config.resolved.yaml`` + ``model.pt``).

One loader for every command that reads runs (``evaluate``, ``index build``, ``explore``):
checks the folder, upgrades a config written by an older version
(:mod:`recsys.config.legacy`), validates it against today's schema and checks the task. Every
error names the config key, the folder and the command that makes such a run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recsys.config.legacy import upgrade_run_config
from recsys.config.schema import ConfigError, validate

__all__ = ["load_run_config"]


def load_run_config(
    run_dir: str | None, key: str, task: str | None, command: str
) -> tuple[DictConfig, Path]:
    """``(validated config, folder)`` of the finished run at ``run_dir`` (config key ``key``);
    with ``task`` it must be a run of that task (``ranking`` / ``retrieval``)."""
    if not run_dir:
        raise ConfigError(f"{key} is required: the folder of a finished run of `{command}`")
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{key}: run folder '{path}' does not exist (run `{command}` first)")
    for name in ("config.resolved.yaml", "model.pt"):
        if not (path / name).is_file():
            raise ConfigError(
                f"{key}: '{path}' has no {name}: is it a finished run of `{command}`?"
            )
    raw = OmegaConf.load(path / "config.resolved.yaml")
    try:
        cfg = validate(upgrade_run_config(raw, f"{key} '{path}'"))
    except ConfigError as e:
        raise ConfigError(
            f"{key}: the config of '{path}' does not load ({e}); re-run it with `recsys train` "
            "and the same overrides"
        ) from None
    if task is not None and cfg.task != task:
        raise ConfigError(
            f"{key}: '{path}' is a {cfg.task} run ({cfg.name}); a {task} run is needed, "
            f"e.g. `{command}`"
        )
    return cfg, path
