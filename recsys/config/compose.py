"""Composing a command's config without the command line (the Python API, notebooks): the
same primary configs and overrides as ``recsys <command>``, from the source checkout's
``configs/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

__all__ = ["compose_config", "config_dir", "repo_root"]


def repo_root() -> Path:
    """The source checkout the package was installed from (editable install)."""
    return Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """``<checkout>/configs``; a clear error when the package was not installed from one."""
    path = repo_root() / "configs"
    if not path.is_dir():
        raise SystemExit(
            f"recsys: config folder not found at {path}; install from a source checkout "
            "with scripts/install.sh (an editable install keeps configs/ beside the package)"
        )
    return path


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The composed primary config ``config_name`` (``train``, ``evaluate``, ``export``,
    ``index``, ``explore``) with Hydra ``overrides``, exactly as the command would see it
    (without the ``hydra`` node).

    >>> compose_config("train", ["experiment=dlrm_movielens_tiny"]).name
    'dlrm_movielens_tiny'
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
