"""Upgrades the ``config.resolved.yaml`` of runs written before the config groups of
``retrieval`` existed (format 1), so ``recsys evaluate``, ``index build`` and ``explore`` still
open them.

Format 1 two-tower runs had ``model: null`` and a free-form ``retrieval`` node holding
``data``, ``history_len``, ``model``, ``trainer`` (its own batch size, epochs, Adam learning
rate, sparse optimizer and loss settings), ``ks``, ``baselines`` and ``indexes`` as a list.
Format 2 spells the same run with the shared groups: ``model`` (``two_tower``), ``trainer``,
``optimizer``, ``sparse_optimizer`` and ``retrieval.{interactions, loss, ks, baselines,
indexes}``. Ranker runs of format 1 only lose their empty ``retrieval: {}``.

What cannot be upgraded is an error that says how to re-run.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from recsys.config.schema import ConfigError

__all__ = ["is_legacy", "upgrade_run_config"]

_LOSS_KEYS = (
    "num_uniform_negatives",
    "logq_correction",
    "remove_accidental_hits",
    "frequency_alpha",
)
# format-1 retrieval.trainer key -> format-2 trainer key
_TRAINER_KEYS = {
    "batch_size": "batch_size",
    "epochs": "max_epochs",
    "max_steps": "max_steps",
    "grad_clip_norm": "grad_clip_norm",
    "schedule": "schedule",
    "device": "device",
    "progress": "progress",
}
# ... and the keys that went to optimizer, sparse_optimizer, retrieval.loss or seed
_KNOWN_TRAINER = {*_TRAINER_KEYS, *_LOSS_KEYS, "lr", "weight_decay", "sparse_optimizer"}
_KNOWN_TRAINER |= {"loss", "seed"}


def is_legacy(raw: dict[str, Any]) -> bool:
    """Whether a loaded run config is of format 1."""
    node = raw.get("retrieval")
    if node == {}:
        return True
    return isinstance(node, dict) and ("data" in node or isinstance(node.get("indexes"), list))


def _upgrade_retrieval(raw: dict[str, Any], where: str) -> dict[str, Any]:
    old = dict(raw["retrieval"])
    trainer_old = dict(old.get("trainer") or {})
    unknown = sorted(set(trainer_old) - _KNOWN_TRAINER)
    if unknown:
        raise ConfigError(
            f"{where}: the run's retrieval.trainer has keys {unknown} that this version does not "
            "know; re-run it with `recsys train` (the config groups changed)"
        )
    interactions = dict(old.get("data") or {})
    if "history_len" in old:
        interactions["history_len"] = old["history_len"]
    loss = {k: trainer_old[k] for k in _LOSS_KEYS if k in trainer_old}
    if "loss" in trainer_old:
        loss["kind"] = trainer_old["loss"]
    model_old = dict(old.get("model") or {})
    embedding = {"dim": model_old.pop("embedding_dim", 32)}
    embedding["per_table"] = model_old.pop("per_table", {}) or {}
    trainer = dict(raw.get("trainer") or {})
    for src, dst in _TRAINER_KEYS.items():
        if src in trainer_old:
            trainer[dst] = trainer_old[src]
    trainer.setdefault("batch_size", 512)
    if "epochs" not in trainer_old:
        trainer["max_epochs"] = 1
    # Format 1 trained with a fixed 4096-row encoding chunk, no validation-driven stopping.
    trainer["eval_batch_size"] = 4096
    stopping = dict(trainer.get("early_stopping") or {})
    stopping.update(enabled=False, restore_best=False, metric=None, mode=None)
    trainer["early_stopping"] = stopping
    trainer["loss_weights"] = {}
    sparse = dict(trainer_old.get("sparse_optimizer") or {"type": "adagrad", "lr": 0.05})
    if sparse.get("type", "adagrad") in ("adagrad", "rowwise_adagrad"):
        sparse.setdefault("eps", 1e-10)  # torch Adagrad's default, what format 1 used
    indexes = {}
    for i, entry in enumerate(old.get("indexes") or []):
        entry = dict(entry)
        name = entry.get("name") or entry.get("kind")
        if not name or name in indexes:
            raise ConfigError(
                f"{where}: retrieval.indexes[{i}] has no kind or repeats {name!r}; re-run the "
                "run with `recsys train`"
            )
        indexes[name] = entry
    out = {k: v for k, v in raw.items() if k != "retrieval"}
    out["model"] = {
        "name": "two_tower",
        "fused": False,
        "kernel": "auto",
        "embedding": embedding,
        "arch": model_old,
    }
    out["baseline"] = None
    out["trainer"] = trainer
    out["optimizer"] = {
        "_target_": "torch.optim.Adam",
        "lr": trainer_old.get("lr", 1e-3),
        "weight_decay": trainer_old.get("weight_decay", 0.0),
    }
    out["sparse_optimizer"] = sparse
    out["retrieval"] = {
        "interactions": interactions,
        "loss": loss,
        "ks": list(old.get("ks") or [10, 20, 50, 100]),
        "baselines": dict(old.get("baselines") or {}),
        "indexes": indexes,
    }
    return out


def upgrade_run_config(cfg: DictConfig, where: str) -> DictConfig:
    """``cfg`` in format 2 (unchanged when it already is); ``where`` names the run folder in
    errors."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    if not isinstance(raw, dict) or not is_legacy(raw):
        return cfg
    if raw["retrieval"] == {}:
        raw = {k: v for k, v in raw.items() if k != "retrieval"}
    elif raw.get("task") == "retrieval":
        raw = _upgrade_retrieval(raw, where)
    return OmegaConf.create(raw)
