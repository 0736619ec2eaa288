"""Full-corpus ranking metrics on top-k id lists, and exact top-k selection from scores.

The functions take the ``U x Kmax`` top-k item ids of ``U`` users (from exact scoring via
:func:`topk_from_scores` or from an ANN index; ``-1`` marks an empty slot) and each user's
relevant (held-out) items, and compute, for each cut-off ``K``:

* ``recall@K``  = |relevant in the top K| / |relevant| (the standard full-corpus recall; it
  is below 1 whenever a user has more than ``K`` relevant items);
* ``ndcg@K``    = DCG@K / IDCG@K with binary gains, ``DCG = sum 1 / log2(rank + 1)`` over the
  hits at 1-based ranks ``<= K`` and the ideal DCG over ``min(|relevant|, K)`` ranks;
* ``hitrate@K`` = 1 if any relevant item is in the top K, else 0;
* ``mrr``       = 1 / rank of the first relevant item within all ``Kmax`` columns (0 if none),

each averaged over the users with at least one relevant item (``users`` counts them; the
metrics are ``nan`` when there is none). Relevant ids repeated for one user count once.

Example:
    >>> import numpy as np
    >>> m = ranking_metrics(np.array([[3, 1, 2]]), [np.array([1, 7])], ks=(1, 3))
    >>> m["recall@3"], m["hitrate@1"], m["mrr"]
    (0.5, 0.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "DEFAULT_KS",
    "RankingAccumulator",
    "per_user_ranking_metrics",
    "ranking_metrics",
    "topk_from_scores",
]

DEFAULT_KS = (10, 20, 50, 100)
_CHUNK_ELEMENTS = 1 << 22  # score entries per chunk of topk_from_scores (~32 MiB of temporaries)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _id_lists(
    values: Any, name: str, n_rows: int, rows: str, n_items: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A list of integer id arrays, one per ``rows`` row, as ``(lengths, all ids)`` int64.

    Ids must be ``>= 0`` and, when ``n_items`` is given, ``< n_items``; ``name`` is the
    argument named in the errors.
    """
    lists = list(values)
    if len(lists) != n_rows:
        raise ValueError(
            f"{name} must hold one id array per {rows} row ({n_rows}), got {len(lists)}"
        )
    arrays = [_as_numpy(a).ravel() for a in lists]
    for row, a in enumerate(arrays):
        if not a.size:
            continue
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name}[{row}] must hold integer item ids, got dtype {a.dtype}")
        if n_items is None and a.min() < 0:
            raise ValueError(f"{name}[{row}] has a negative item id {int(a.min())}")
        if n_items is not None and (a.min() < 0 or a.max() >= n_items):
            raise ValueError(f"{name}[{row}] has item ids outside 0 .. {n_items - 1}")
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    ids = np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)
    return lengths, ids


def _exclusion_lists(exclude: Any, n_rows: int, n_items: int) -> sp.csr_matrix | None:
    """``exclude`` (CSR or a list of id arrays, one per row) as an ``n_rows x n_items`` CSR."""
    if exclude is None:
        return None
    if sp.issparse(exclude):
        matrix = sp.csr_matrix(exclude)
        if matrix.shape != (n_rows, n_items):
            raise ValueError(
                f"exclude must have shape {n_rows} x {n_items} (one row per scores row), "
                f"got {matrix.shape[0]} x {matrix.shape[1]}"
            )
        return matrix
    lengths, cols = _id_lists(exclude, "exclude", n_rows, "scores", n_items=n_items)
    indptr = np.concatenate(([0], np.cumsum(lengths)))
    data = np.ones(cols.shape[0], dtype=np.float32)
    return sp.csr_matrix((data, cols, indptr), shape=(n_rows, n_items))


def _topk_chunk(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` ids of each row of a finite-or-``-inf`` float chunk (``k <= I``).

    Higher score first, ties by lower item index; ``-inf`` entries come back as ``-1``.
    ``R x I -> R x k``.
    """
    n_rows, n_items = scores.shape
    # The k-th largest score of each row; everything above it is in, ties at it fill the rest
    # of the k slots in index order.
    kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k]
    above = scores > kth[:, None]
    at = scores == kth[:, None]
    room = k - above.sum(axis=1)
    keep = above | (at & (np.cumsum(at, axis=1) <= room[:, None]))
    ids = np.nonzero(keep)[1].reshape(n_rows, k)  # ascending ids per row
    picked = np.take_along_axis(scores, ids, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")  # stable: equal scores keep id order
    ids = np.take_along_axis(ids, order, axis=1)
    ids[np.take_along_axis(picked, order, axis=1) == -np.inf] = -1
    return ids


def topk_from_scores(
    scores: Any, k: int, exclude: Any = None, chunk_size: int | None = None
) -> np.ndarray:
    """Exact top-``k`` item ids of every row of a full-corpus score matrix.

    Args:
        scores: ``U x I`` real scores (higher is better); NaN is an error, ``-inf`` allowed.
        k: number of ids per row (``>= 1``); when fewer than ``k`` items remain the row is
            padded with ``-1``.
        exclude: items never to return, as a ``U x I`` sparse matrix (its stored entries, row
            ``u`` for scores row ``u``) or a list of ``U`` integer id arrays; ``None``: none.
        chunk_size: rows per chunk (default: about 4M score entries per chunk), which bounds
            the temporaries; ``scores`` itself is never modified.

    Returns:
        ``U x k`` int64 ids, best first; ties broken by the lower item index; excluded items
        and items scored ``-inf`` never appear (``-1`` slots instead).
    """
    s = _as_numpy(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape U x I, got shape {tuple(s.shape)}")
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n_users, n_items = s.shape
    mask = _exclusion_lists(exclude, n_users, n_items)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(1, n_items))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    k_eff = min(int(k), n_items)
    out = np.full((n_users, int(k)), -1, dtype=np.int64)
    if k_eff == 0:
        return out
    for start in range(0, n_users, chunk_size):
        stop = min(n_users, start + chunk_size)
        chunk = s[start:stop].astype(np.float32 if s.dtype == np.float32 else np.float64)
        if np.isnan(chunk).any():
            row, col = np.argwhere(np.isnan(chunk))[0]
            raise ValueError(f"scores contain NaN (first at row {start + row}, item {col})")
        if mask is not None:
            part = mask[start:stop].tocoo()
            chunk[part.row, part.col] = -np.inf
        out[start:stop, :k_eff] = _topk_chunk(chunk, k_eff)
    return out


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    values = list(ks)
    if not values:
        raise ValueError("ks must hold at least one cut-off")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"every K must be a positive integer, got {k!r} in {list(ks)}")
    if len(set(values)) != len(values):
        raise ValueError(f"ks must be distinct, got {list(ks)}")
    return tuple(sorted(int(k) for k in values))


def _metric_names(ks: tuple[int, ...]) -> tuple[str, ...]:
    names = [f"{m}@{k}" for m in ("recall", "ndcg", "hitrate") for k in ks]
    return (*names, "mrr")


def _check_topk(topk: Any, ks: tuple[int, ...]) -> np.ndarray:
    t = _as_numpy(topk)
    if t.ndim != 2:
        raise ValueError(f"topk must have shape U x Kmax, got shape {tuple(t.shape)}")
    if t.size and t.dtype.kind not in "iu":
        raise ValueError(f"topk must hold integer item ids, got dtype {t.dtype}")
    t = t.astype(np.int64, copy=False)
    if ks[-1] > t.shape[1]:
        raise ValueError(f"K = {ks[-1]} exceeds the number of topk columns Kmax = {t.shape[1]}")
    if t.size and t.min() < -1:
        row, col = np.argwhere(t < -1)[0]
        raise ValueError(
            f"topk ids must be >= 0 (or -1 for padding), got {t[row, col]} at row {row}, "
            f"column {col}"
        )
    if t.shape[1] > 1 and t.size:
        srt = np.sort(t, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            row = int(np.flatnonzero(dup.any(axis=1))[0])
            item = int(srt[row, 1:][dup[row]][0])
            raise ValueError(f"topk row {row} lists item {item} more than once")
    return t


def _relevant_keys(relevant: Any, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique ``(user, item)`` pairs as ``(users, items)`` plus ``|relevant|`` per user."""
    if sp.issparse(relevant):
        matrix = sp.csr_matrix(relevant)
        if matrix.shape[0] != n_users:
            raise ValueError(
                f"relevant must have one row per topk row ({n_users}), got {matrix.shape[0]}"
            )
        matrix = matrix.copy()
        matrix.eliminate_zeros()
        matrix.sum_duplicates()
        coo = matrix.tocoo()
        users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    else:
        lengths, items = _id_lists(relevant, "relevant", n_users, "topk")
        users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    if items.size:
        span = int(items.max()) + 1
        keys = np.unique(users * span + items)
        users, items = np.divmod(keys, span)
    counts = np.bincount(users, minlength=n_users).astype(np.int64)
    return users, items, counts


def per_user_ranking_metrics(
    topk: Any, relevant: Any, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """Every metric for every user with at least one relevant item.

    Args:
        topk: ``U x Kmax`` int item ids, best first; ``-1`` is an empty slot (never a hit).
            Ids must be unique within a row.
        relevant: the relevant items of each of the ``U`` users: a ``U x I`` sparse matrix
            (stored non-zero entries) or a list of ``U`` integer id arrays.
        ks: cut-offs, each ``<= Kmax``.

    Returns:
        ``{"user": V int64 row indices, "recall@K" ..., "ndcg@K" ..., "hitrate@K" ...,
        "mrr": V float64}`` for the ``V`` users with a relevant item.
    """
    ks_sorted = _check_ks(ks)
    t = _check_topk(topk, ks_sorted)
    n_users, k_max = t.shape
    rel_users, rel_items, n_rel = _relevant_keys(relevant, n_users)
    hits = np.zeros((n_users, k_max), dtype=bool)
    if rel_items.size and t.size:
        span = max(int(rel_items.max()), int(t.max())) + 1
        rel_keys = rel_users * span + rel_items  # sorted: unique keys came out of np.unique
        keys = np.arange(n_users, dtype=np.int64)[:, None] * span + t
        pos = np.minimum(np.searchsorted(rel_keys, keys), rel_keys.size - 1)
        hits = (rel_keys[pos] == keys) & (t >= 0)
    users = np.flatnonzero(n_rel > 0)
    hits, n_rel = hits[users], n_rel[users]
    discount = 1.0 / np.log2(np.arange(2, k_max + 2, dtype=np.float64))  # rank r -> 1/log2(r+1)
    ideal = np.concatenate(([0.0], np.cumsum(discount)))  # ideal[m] = IDCG with m hits
    cum_hits = np.cumsum(hits, axis=1)
    cum_dcg = np.cumsum(hits * discount, axis=1)
    out: dict[str, np.ndarray] = {"user": users}
    for k in ks_sorted:
        out[f"recall@{k}"] = cum_hits[:, k - 1] / n_rel
    for k in ks_sorted:
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / ideal[np.minimum(n_rel, k)]
    for k in ks_sorted:
        out[f"hitrate@{k}"] = (cum_hits[:, k - 1] > 0).astype(np.float64)
    any_hit = hits.any(axis=1)
    first = np.argmax(hits, axis=1)
    out["mrr"] = np.where(any_hit, 1.0 / (first + 1.0), 0.0)
    return out


def _average(per_user: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, float | int]:
    n = int(per_user["user"].shape[0])
    result: dict[str, float | int] = {
        name: float(np.mean(per_user[name])) if n else math.nan for name in names
    }
    result["users"] = n
    return result


def ranking_metrics(
    topk: Any, relevant: Any, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float | int]:
    """Mean ``recall@K``, ``ndcg@K``, ``hitrate@K`` for every ``K`` in ``ks``, ``mrr``, and
    ``users`` (how many users had a relevant item and were averaged).

    Args:
        topk: ``U x Kmax`` int item ids, best first; ``-1`` pads (an empty slot).
        relevant: a ``U x I`` sparse matrix or a list of ``U`` integer id arrays.
        ks: cut-offs, each at most ``Kmax``.

    Raises:
        ValueError: on a shape mismatch, ``K > Kmax``, ids below ``-1`` in ``topk``, a repeated
            id within a ``topk`` row, or negative / non-integer relevant ids.
    """
    ks_sorted = _check_ks(ks)
    return _average(per_user_ranking_metrics(topk, relevant, ks_sorted), _metric_names(ks_sorted))


class RankingAccumulator:
    """Streaming :func:`ranking_metrics`: feed batches of users, get the metrics of all of them.

    Keeps the per-user values (``3 len(ks) + 1`` floats per user with a relevant item), so
    :meth:`compute` equals :func:`ranking_metrics` on the concatenated batches exactly. Every
    batch must have the same ``Kmax`` (it is the ``mrr`` cut-off).

    Example:
        >>> import numpy as np
        >>> acc = RankingAccumulator(ks=(1, 2))
        >>> acc.update(np.array([[5, 6]]), [np.array([6])])
        >>> acc.update(np.array([[1, 2]]), [np.array([1])])
        >>> acc.compute()["mrr"], acc.compute()["users"]
        (0.75, 2)
    """

    def __init__(self, ks: Sequence[int] = DEFAULT_KS) -> None:
        self.ks = _check_ks(ks)
        self.names = _metric_names(self.ks)
        self.k_max: int | None = None
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        self._batches = 0

    @property
    def users(self) -> int:
        """Number of users with a relevant item seen so far."""
        return int(sum(p.shape[0] for p in self._parts["mrr"]))

    def update(self, topk: Any, relevant: Any) -> None:
        """Adds one batch (``U x Kmax`` top-k and the ``U`` users' relevant items).

        Raises ValueError (and stores nothing) on bad input or a ``Kmax`` that differs from the
        first batch's.
        """
        t = _as_numpy(topk)
        width = t.shape[1] if t.ndim == 2 else None
        if self.k_max is not None and width is not None and width != self.k_max:
            raise ValueError(
                f"every batch must have Kmax = {self.k_max} topk columns (the mrr cut-off), "
                f"got {width}"
            )
        per_user = per_user_ranking_metrics(t, relevant, self.ks)
        if self.k_max is None:
            self.k_max = width
        for name in self.names:
            self._parts[name].append(per_user[name])
        self._batches += 1

    def compute(self) -> dict[str, float | int]:
        """Mean metrics and ``users`` over every batch so far (``nan`` if no user had a
        relevant item).

        Raises:
            ValueError: if nothing has been seen.
        """
        if self._batches == 0:
            raise ValueError("RankingAccumulator.compute() called before any update")
        values = {name: np.concatenate(self._parts[name]) for name in self.names}
        values["user"] = values["mrr"]
        return _average(values, self.names)

    def reset(self) -> None:
        """Forgets everything seen."""
        self._parts = {name: [] for name in self.names}
        self.k_max = None
        self._batches = 0
