"""The finished synthetic world: its entities with the task biases solved so the base rates
match the config.

Solving the biases needs both the entities (:mod:`.world`) and the impression model
(:mod:`.impressions`, which reads a world), so it sits above both and neither imports the
other backwards: ``world <- impressions <- calibration``.
"""

from __future__ import annotations

import numpy as np

from recsys.data.synthetic.config import SocialConfig
from recsys.data.synthetic.impressions import simulate_impressions
from recsys.data.synthetic.sampling import rng_for
from recsys.data.synthetic.world import SocialWorld, sample_entities

_CALIBRATION_ROWS = 100_000


def build_world(config: SocialConfig) -> SocialWorld:
    """Builds users, authors, posts, the follow graph and the truth parameters from the seed,
    then solves the task biases on ``100_000`` simulated impressions of that world."""
    world = sample_entities(config)
    start, end = config.start_timestamp, config.end_timestamp
    sample = simulate_impressions(world, rng_for(config.seed, 2), _CALIBRATION_ROWS, start, end)
    world.bias = solve_biases(sample["logit"], np.array(config.base_rates()))
    return world


def solve_biases(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per column ``b`` with ``mean(sigmoid(b + logits[:, t])) == targets[t]`` (Newton)."""
    b = np.log(targets / (1.0 - targets))
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(logits + b)))
        step = (p.mean(axis=0) - targets) / np.maximum((p * (1.0 - p)).mean(axis=0), 1e-12)
        b -= np.clip(step, -2.0, 2.0)
        if np.abs(step).max() < 1e-10:
            break
    return b
