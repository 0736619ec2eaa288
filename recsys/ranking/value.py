"""The value formula: one number per candidate from per-task probabilities.

``value = sum_t weights[t] * P(t) - sum_n penalties[n] * P(n)``, e.g.
``w_like P(like) + w_comment P(comment) + w_share P(share) + w_save P(save)
+ w_dwell P(long_dwell) - w_neg P(negative)``.

A task with a non-zero weight or penalty that the ranker does not produce is an error naming
the task; a zero weight makes the task optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_WEIGHTS", "ValueFormula"]

DEFAULT_WEIGHTS: dict[str, float] = {
    "like": 1.0,
    "comment": 4.0,
    "share": 6.0,
    "save": 3.0,
    "long_dwell": 0.5,
}


@dataclass(frozen=True)
class ValueFormula:
    """Configurable linear value over task probabilities.

    Attributes:
        weights: task -> weight added (``w * P(task)``); must be finite.
        penalties: task -> weight subtracted (``w * P(task)``), e.g. ``{"negative": 2.0}``;
            must be finite and >= 0.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    penalties: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, m in (("weights", self.weights), ("penalties", self.penalties)):
            for task, w in m.items():
                if not np.isfinite(w):
                    raise ValueError(f"ValueFormula {kind}[{task!r}] must be finite, got {w}")
        for task, w in self.penalties.items():
            if w < 0:
                raise ValueError(f"ValueFormula penalties[{task!r}] must be >= 0, got {w}")
        both = set(self.weights) & set(self.penalties)
        if both:
            raise ValueError(f"tasks both weighted and penalized: {sorted(both)}")

    def signed(self) -> dict[str, float]:
        """Task -> signed coefficient (penalties negated), zero weights dropped."""
        out = {t: float(w) for t, w in self.weights.items() if w != 0}
        out.update({t: -float(w) for t, w in self.penalties.items() if w != 0})
        return out

    def required_tasks(self) -> tuple[str, ...]:
        """Tasks the ranker must produce (those with a non-zero coefficient)."""
        return tuple(self.signed())

    def check_tasks(self, tasks: tuple[str, ...] | list[str]) -> None:
        """Raises ``KeyError`` naming the first required task missing from ``tasks``."""
        for task in self.required_tasks():
            if task not in tasks:
                raise KeyError(
                    f"value formula needs task {task!r} (weight {self.signed()[task]}) but the "
                    f"ranker produces only {list(tasks)}; set its weight to 0 to drop it"
                )

    def __call__(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``probs``: task -> ``N`` probabilities -> ``N`` values (float64)."""
        self.check_tasks(list(probs))
        coef = self.signed()
        n = len(next(iter(probs.values()))) if probs else 0
        value = np.zeros(n)
        for task, c in coef.items():
            p = np.asarray(probs[task], dtype=np.float64)
            if p.shape != (n,):
                raise ValueError(f"probabilities of {task!r} have shape {p.shape}, expected ({n},)")
            value += c * p
        return value

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"weights": dict(self.weights), "penalties": dict(self.penalties)}
