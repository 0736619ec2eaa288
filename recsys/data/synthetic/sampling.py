"""Vectorized random-draw and search primitives of the synthetic generator."""

from __future__ import annotations

import numpy as np


def rng_for(seed: int, *tags: int) -> np.random.Generator:
    """An independent random stream per (seed, stage, block...) so stages never share draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, *tags]))


def cumulative(weights: np.ndarray) -> np.ndarray:
    """Normalized cumulative sums of non-negative weights (last entry 1), for :func:`draw`."""
    c = np.cumsum(weights, dtype=np.float64)
    return c / c[-1]


def draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn from a normalized cumulative distribution with uniforms ``u``."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def draw_rows(cum_rows: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per-row categorical draws: ``cum_rows`` is R x K normalized cumulative, one row each."""
    k = cum_rows.shape[1]
    flat = (cum_rows + np.arange(cum_rows.shape[0])[:, None]).ravel()
    idx = np.searchsorted(flat, rows + u, side="right") - rows * k
    return np.clip(idx, 0, k - 1)


def search_sorted(sorted_arr: np.ndarray, queries: np.ndarray, side: str = "left") -> np.ndarray:
    """``np.searchsorted`` that sorts the queries first (much faster for random queries)."""
    flat = queries.ravel()
    order = np.argsort(flat)
    out = np.empty(flat.shape[0], dtype=np.int64)
    out[order] = np.searchsorted(sorted_arr, flat[order], side=side)  # type: ignore[call-overload]
    return out.reshape(queries.shape)


def zscore(x: np.ndarray) -> np.ndarray:
    """Standardized copy of ``x`` (mean 0, standard deviation 1 unless constant)."""
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)
