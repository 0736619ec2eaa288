"""Retrieval baselines that score the full corpus: most-popular and matrix factorization.

Both take a binary ``n_users x n_items`` CSR of training interactions (see
:class:`recsys.data.interactions.InteractionMatrix`) and recommend by scoring *every* item for
each requested user, removing the excluded items, and keeping the top ``k`` (higher score
first, ties broken by the lower item index, ``-1`` when fewer than ``k`` items remain) -- the
same rule as :func:`recsys.metrics.ranking.topk_from_scores`, so their output feeds
:func:`recsys.metrics.ranking.ranking_metrics` directly.

:class:`ImplicitMF` wraps the ALS and BPR models of the ``implicit`` package (an optional
dependency, imported only by ``fit``), on CPU with one thread so that a seed gives the same
factors every time.

Example::

    model = ImplicitMF("als", factors=64).fit(train)          # train: n_users x n_items CSR
    top = model.recommend(np.arange(train.shape[0]), 100, exclude=train + valid)  # U x 100
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["ImplicitMF", "MostPopular"]

_CHUNK_ELEMENTS = 1 << 22  # scores per chunk of users in recommend (bounds temporaries)


def _check_train(train: Any) -> sp.csr_matrix:
    if not sp.issparse(train):
        raise TypeError(f"train must be a scipy sparse n_users x n_items matrix, got {type(train)}")
    matrix = sp.csr_matrix(train, dtype=np.float32)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"train must have at least one user and one item, got {matrix.shape}")
    if matrix.nnz and (not np.isfinite(matrix.data).all() or matrix.data.min() < 0):
        raise ValueError("train values must be finite and non-negative")
    return matrix


def _topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """``R x I`` scores (finite or ``-inf``) -> ``R x k`` ids (``k <= I``), best first, ties by
    lower id, ``-inf`` as ``-1``. Mirrors ``recsys.metrics.ranking`` (which this layer may not
    import); the tests check that both agree."""
    n_rows, n_items = scores.shape
    kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k]
    above = scores > kth[:, None]
    at = scores == kth[:, None]
    keep = above | (at & (np.cumsum(at, axis=1) <= (k - above.sum(axis=1))[:, None]))
    ids = np.nonzero(keep)[1].reshape(n_rows, k)
    picked = np.take_along_axis(scores, ids, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    ids[np.take_along_axis(picked, order, axis=1) == -np.inf] = -1
    return ids


class _FullCorpusRecommender:
    """Shared ``recommend``: score every item, mask exclusions, keep the top ``k``."""

    _shape: tuple[int, int] | None = None
    _f64 = False  # score in float64 (else float32, as the factor models do)

    @property
    def n_users(self) -> int:
        return self._fitted_shape()[0]

    @property
    def n_items(self) -> int:
        return self._fitted_shape()[1]

    def _fitted_shape(self) -> tuple[int, int]:
        if self._shape is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(train) first")
        return self._shape

    def _check_users(self, users: Any) -> np.ndarray:
        u = np.asarray(users)
        if u.ndim != 1:
            raise ValueError(f"users must be a 1-D array of user indices, got shape {u.shape}")
        if u.size and u.dtype.kind not in "iu":
            raise ValueError(f"users must be integer indices, got dtype {u.dtype}")
        u = u.astype(np.int64, copy=False)
        n_users = self.n_users
        if u.size and (u.min() < 0 or u.max() >= n_users):
            bad = int(u[(u < 0) | (u >= n_users)][0])
            raise IndexError(f"user index {bad} is outside 0 .. {n_users - 1}")
        return u

    def _scores(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, users: Any) -> np.ndarray:
        """Scores of every item for ``users`` (``U`` user indices): ``U x n_items``."""
        return self._scores(self._check_users(users))

    def recommend(
        self, users: Any, k: int, exclude: Any = None, chunk_size: int | None = None
    ) -> np.ndarray:
        """Top-``k`` item ids of each user, best first: ``U x k`` int64 (``-1`` pads).

        Args:
            users: ``U`` user indices (rows of the training matrix).
            k: ids per user (``>= 1``).
            exclude: ``n_users x n_items`` sparse matrix indexed by *user index*; the stored
                entries of row ``users[j]`` are never recommended to user ``j`` (typically
                train, or train + valid at test time). ``None``: nothing excluded.
            chunk_size: users scored at once (default: about 4M scores per chunk).
        """
        u = self._check_users(users)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        n_users, n_items = self._fitted_shape()
        mask = None
        if exclude is not None:
            if not sp.issparse(exclude):
                raise TypeError(f"exclude must be a scipy sparse matrix, got {type(exclude)}")
            if exclude.shape != (n_users, n_items):
                raise ValueError(
                    f"exclude must have shape {n_users} x {n_items} (users x items of train), "
                    f"got {exclude.shape[0]} x {exclude.shape[1]}"
                )
            mask = sp.csr_matrix(exclude)
        step = chunk_size or max(1, _CHUNK_ELEMENTS // n_items)
        k_eff = min(int(k), n_items)
        out = np.full((u.shape[0], int(k)), -1, dtype=np.int64)
        for start in range(0, u.shape[0], step):
            batch = u[start : start + step]
            scores = np.array(self._scores(batch), dtype=np.float64 if self._f64 else np.float32)
            if mask is not None:
                part = mask[batch].tocoo()
                scores[part.row, part.col] = -np.inf
            out[start : start + batch.shape[0], :k_eff] = _topk_rows(scores, k_eff)
        return out


class MostPopular(_FullCorpusRecommender):
    """Scores every item by its number of training interactions (the same for every user).

    ``fit(train)``: ``train`` is ``n_users x n_items``; the score of item ``i`` is the sum of
    column ``i`` (with a binary matrix: how many users interacted with it).
    """

    _f64 = True

    def __init__(self) -> None:
        self.popularity: np.ndarray | None = None

    def fit(self, train: Any) -> MostPopular:
        """Counts the interactions of every item; returns ``self``."""
        matrix = _check_train(train)
        self.popularity = np.asarray(matrix.sum(axis=0, dtype=np.float64)).ravel()
        self._shape = matrix.shape
        return self

    def _scores(self, users: np.ndarray) -> np.ndarray:
        assert self.popularity is not None
        return np.broadcast_to(self.popularity, (users.shape[0], self.popularity.shape[0]))


class ImplicitMF(_FullCorpusRecommender):
    """Matrix factorization by the ``implicit`` package: ALS or BPR; score = user . item.

    Args:
        kind: ``"als"`` (weighted ALS with conjugate gradient, Hu et al. 2008) or ``"bpr"``
            (Bayesian personalized ranking, SGD).
        factors: latent dimension.
        iterations: ALS sweeps or BPR epochs.
        regularization: L2 weight.
        alpha: ALS confidence scaling: an observed pair weighs ``alpha * value`` in the loss
            (unobserved pairs weigh 1), as implicit defines it; ignored by BPR.
        learning_rate: BPR step size; ignored by ALS.
        seed: ``random_state`` of the factor initialization (and BPR sampling); with
            ``num_threads=1`` the same seed gives the same factors.
        num_threads: training threads (more is faster but BPR is then not deterministic).

    After ``fit``: ``user_factors`` (``n_users x d``) and ``item_factors`` (``n_items x d``;
    BPR adds a bias column, matched by a column of ones in the user factors).
    """

    def __init__(
        self,
        kind: Literal["als", "bpr"] = "als",
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.01,
        alpha: float = 1.0,
        learning_rate: float = 0.01,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        if kind not in ("als", "bpr"):
            raise ValueError(f"kind must be 'als' or 'bpr', got {kind!r}")
        for name, value in (("factors", factors), ("iterations", iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if regularization < 0 or alpha <= 0 or learning_rate <= 0:
            raise ValueError(
                "regularization must be >= 0 and alpha, learning_rate > 0, got "
                f"{regularization}, {alpha}, {learning_rate}"
            )
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.kind = kind
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.seed = seed
        self.num_threads = num_threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"ImplicitMF(kind={self.kind!r}, factors={self.factors}, "
            f"iterations={self.iterations}, regularization={self.regularization}, "
            f"alpha={self.alpha}, learning_rate={self.learning_rate}, seed={self.seed})"
        )

    def _build(self) -> Any:
        """Imports ``implicit`` (a clear ImportError if missing) and returns the model factory."""
        try:
            import implicit.als
            import implicit.bpr
        except ImportError as e:
            raise ImportError(
                "ImplicitMF needs the optional package 'implicit' (pip install implicit==0.7.2); "
                f"importing it failed: {e}"
            ) from e
        common = {
            "factors": self.factors,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "random_state": self.seed,
            "num_threads": self.num_threads,
            "use_gpu": False,
        }
        if self.kind == "als":
            return lambda: implicit.als.AlternatingLeastSquares(alpha=self.alpha, **common)
        return lambda: implicit.bpr.BayesianPersonalizedRanking(
            learning_rate=self.learning_rate, **common
        )

    def fit(self, train: Any) -> ImplicitMF:
        """Trains on ``train`` (``n_users x n_items``, non-negative); returns ``self``."""
        matrix = _check_train(train)
        make = self._build()  # imports implicit (and the BLAS it loads) before limiting it
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with implicit
            model = make()
            model.fit(matrix, show_progress=False)
        else:
            # A multi-threaded BLAS inside implicit's own threads oversubscribes the cores
            # (implicit warns about it when the model is built, so build it inside too).
            with threadpool_limits(limits=1, user_api="blas"):
                model = make()
                model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._shape = matrix.shape
        return self

    def _scores(self, users: np.ndarray) -> np.ndarray:
        assert self.user_factors is not None and self.item_factors is not None
        return self.user_factors[users] @ self.item_factors.T
