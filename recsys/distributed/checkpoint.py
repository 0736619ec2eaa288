"""Checkpoints of a sharded run: every worker writes its own shards, nothing is gathered.

One checkpoint folder holds

* ``.metadata`` + ``__<rank>_0.distcp``: the tensors of every worker through
  ``torch.distributed.checkpoint`` (DCP): the model (sharded tables as ``ShardedTensor``s, the
  replicated dense part once), the fused embedding optimizers' state (row-wise Adagrad sums,
  sharded like their tables) and the best weights seen so far;
* ``rank<r>.pt``: what differs per worker or is small: the dense optimizers' state, the loop
  position, the RNG states and the task's state.

Ray Train merges the folders its workers report into one (file names never collide). A folder
loads back into the same sharding (:func:`load_state`, a resumed run) or, without a process
group, into a plain unsharded model (:func:`load_full_model`, the driver after training):
DCP reads whichever pieces of the saved shards each target tensor needs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn

__all__ = ["load_full_model", "load_state", "save_state"]

_SHARDED_KEYS = ("model", "fused", "best_model")


def _rank_file(folder: Path, rank: int) -> Path:
    return folder / f"rank{rank}.pt"


def save_state(folder: Path, state: dict[str, Any], fused_names: list[str], rank: int) -> None:
    """Writes a trainer's ``state_dict()`` (``Trainer.state_dict`` layout) into ``folder``;
    a collective: every worker calls it with its own state."""
    folder.mkdir(parents=True, exist_ok=True)
    optimizers = state["optimizers"]
    sharded = {
        "model": state["model"],
        "fused": {n: optimizers[n] for n in fused_names},
    }
    if state.get("best_model") is not None:
        sharded["best_model"] = state["best_model"]
    dcp.save(sharded, checkpoint_id=str(folder))
    rest = {k: v for k, v in state.items() if k not in (*_SHARDED_KEYS, "optimizers")}
    rest["dense_optimizers"] = {n: o for n, o in optimizers.items() if n not in fused_names}
    rest["has_best"] = state.get("best_model") is not None
    torch.save(rest, _rank_file(folder, rank))


def load_state(
    folder: Path, template: dict[str, Any], fused_names: list[str], rank: int
) -> dict[str, Any]:
    """The state saved by :func:`save_state`, read into ``template`` (the trainer's current
    ``state_dict()``, giving the sharding); a collective."""
    path = _rank_file(folder, rank)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {folder} has no state of worker {rank}: was it written by a run with "
            "the same number of workers?"
        )
    rest = torch.load(path, map_location="cpu", weights_only=False)
    optimizers = template["optimizers"]
    sharded: dict[str, Any] = {
        "model": template["model"],
        "fused": {n: optimizers[n] for n in fused_names},
    }
    if rest.pop("has_best"):
        sharded["best_model"] = {k: v.detach().clone() for k, v in template["model"].items()}
    dcp.load(sharded, checkpoint_id=str(folder))
    out = dict(rest)
    out["model"] = sharded["model"]
    out["optimizers"] = {**rest.pop("dense_optimizers"), **sharded["fused"]}
    out.pop("dense_optimizers", None)
    out["best_model"] = sharded.get("best_model")
    return out


def load_full_model(folder: Path, model: nn.Module, key: str = "model") -> nn.Module:
    """Loads the ``key`` weights of a sharded checkpoint into the unsharded ``model`` (in this
    process, no process group needed); returns ``model``."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():  # one process on purpose: DCP's single-process warning
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.load({key: state}, checkpoint_id=str(folder))
    model.load_state_dict(state)
    return model
