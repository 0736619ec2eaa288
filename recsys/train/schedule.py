"""Learning-rate schedules: linear warm-up followed by a decay, as a pure function of the step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Decay = Literal["none", "linear", "cosine", "exponential"]


@dataclass
class ScheduleConfig:
    """Warm-up then decay of every optimizer's learning rate (dense and fused sparse).

    ``warmup_steps``: the factor rises linearly from ``1/warmup_steps`` to 1.
    ``decay``: after warm-up, ``linear`` and ``cosine`` go from 1 to ``min_lr_ratio`` over
    ``decay_steps`` (default: the rest of training); ``exponential`` multiplies by ``gamma``
    every ``decay_steps`` steps; ``none`` keeps 1.
    """

    warmup_steps: int = 0
    decay: str = "none"
    decay_steps: int | None = None
    min_lr_ratio: float = 0.0
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.decay not in ("none", "linear", "cosine", "exponential"):
            raise ValueError(
                f"schedule.decay must be none, linear, cosine or exponential, got {self.decay!r}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def lr_factor(config: ScheduleConfig, step: int, total_steps: int | None) -> float:
    """The multiplier of the base learning rate for 0-based optimizer step ``step``."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.decay == "none":
        return 1.0
    after = step - config.warmup_steps
    if config.decay == "exponential":
        every = config.decay_steps or 1000
        return config.gamma ** (after // every)
    span = config.decay_steps
    if span is None:
        span = max(1, (total_steps or 0) - config.warmup_steps)
    progress = min(1.0, after / max(1, span))
    floor = config.min_lr_ratio
    if config.decay == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
