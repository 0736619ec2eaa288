"""Checkpoints that resume to the same continuation.

A checkpoint holds the model's weights, every optimizer's state (dense, non-fused sparse, and
the fused embedding optimizers' momentum), the loop position (epoch, batch within epoch,
global step), early-stopping state, the best weights so far, and the RNG states of torch,
NumPy and Python. Files are written to a temporary name and renamed, so a crash never leaves a
half-written checkpoint that looks valid.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)\.pt$")


@dataclass
class LoopState:
    """Where the training loop is and what it has seen so far."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    examples: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    best_valid: dict[str, Any] | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    partial_epoch_loss: list[float] | None = None


def rng_state() -> dict[str, Any]:
    """The RNG states that influence training (torch CPU, NumPy global, Python)."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint` (a trusted local file)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: Path, keep_last: int) -> None:
    """Deletes all but the newest ``keep_last`` checkpoints."""
    for old in list_checkpoints(directory)[: max(0, len(list_checkpoints(directory)) - keep_last)]:
        old.unlink(missing_ok=True)


def loop_state_dict(state: LoopState) -> dict[str, Any]:
    return asdict(state)


def loop_state_from_dict(d: dict[str, Any]) -> LoopState:
    return LoopState(**d)
