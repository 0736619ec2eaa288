"""The safe instantiate helper: builds objects from ``_target_`` nodes of allowed packages only,
and reports mistakes with the config path of the node."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys.config.schema import ConfigError

ALLOWED_PREFIXES = ("recsys.", "torch.optim.", "torchrec.optim.")


def instantiate_node(node: Mapping[str, Any] | DictConfig, key: str, /, **kwargs: Any) -> Any:
    """Builds the object that ``node`` describes; ``key`` is its dotted config key.

    Raises:
        ConfigError: no ``_target_``, a target outside the allowed packages, or a constructor
            that rejects the node's keys (the message names ``path`` and the cause).
    """
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"config key '{key}' must be a mapping with a '_target_'")
    target = str(node["_target_"])
    if not target.startswith(ALLOWED_PREFIXES):
        raise ConfigError(
            f"config key '{key}._target_' = {target!r} is outside the allowed packages "
            f"{list(ALLOWED_PREFIXES)}"
        )
    # Live objects (a FeatureSpec, an embedding module) are passed to the constructor directly:
    # Hydra would turn dataclass keyword arguments into configs.
    try:
        factory = instantiate({**node, "_partial_": True})
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise ConfigError(f"cannot build '{key}' ({target}): {cause}") from None
    _check_keys(getattr(factory, "func", None), node, key, target)
    if node.get("_partial_"):
        return factory
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"cannot build '{key}' ({target}): {e}") from None


def _check_keys(func: Any, node: Mapping[str, Any], key: str, target: str) -> None:
    """A key of ``node`` that ``func`` does not take is an unknown config key, named with the
    keys that exist (rather than Python's ``unexpected keyword argument``)."""
    if func is None:
        return
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature: the call will tell
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [k for k in node if not str(k).startswith("_") and k not in params]
    if unknown:
        raise ConfigError(
            f"unknown config key '{key}.{unknown[0]}' ({target}); known keys there: "
            f"{', '.join(known)}"
        )
