"""The ranking stage: per-task probabilities for (user, candidate items).

* :class:`Ranker` protocol: ``tasks`` and ``score(user, item_ids, now) -> {task: N probs}``.
* :class:`ModelRanker` wraps any ranker module ``forward(dense B x D, sparse KJT) -> B x T``
  logits (e.g. :class:`recsys.models.multitask.MultiTaskRanker`) and a feature builder.
* :class:`SocialFeatureBuilder` builds the model inputs for the synthetic social app from its
  entity tables (users, posts, follows as written by
  :func:`recsys.data.synthetic.write_entities`): raw rows with the point-in-time features at
  request time (post age, follower / follow counts, ``is_following``), mapped by the ranker's
  fitted preprocessor (its saved vocabularies and dense statistics) into tensors. Vectorized:
  one frame and one batch for all candidates.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl
import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.preprocess import FittedPreprocessor
from recsys.ranking.sources import UnknownUserError
from recsys.types import FeatureSpec

__all__ = ["FeatureBuilder", "ModelRanker", "Ranker", "SocialFeatureBuilder", "frame_tensors"]


@runtime_checkable
class Ranker(Protocol):
    """Scores candidates: ``score(user, item_ids N, now) -> {task: N probabilities}``."""

    tasks: tuple[str, ...]

    def score(self, user: int, item_ids: np.ndarray, now: int) -> dict[str, np.ndarray]: ...


@runtime_checkable
class FeatureBuilder(Protocol):
    """``build(user, item_ids N, now) -> (dense N x D float32, sparse KJT with stride N)``."""

    def build(
        self, user: int, item_ids: np.ndarray, now: int
    ) -> tuple[torch.Tensor, KeyedJaggedTensor]: ...


class ModelRanker:
    """A trained ranker module behind the :class:`Ranker` protocol.

    Args:
        model: ``forward(dense B x D, sparse KJT) -> B x T`` logits.
        features: builds the model inputs.
        tasks: names of the ``T`` output columns (default: ``model.task_names``).
        batch_size: candidates per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        features: FeatureBuilder,
        tasks: tuple[str, ...] | None = None,
        batch_size: int = 4096,
    ) -> None:
        names = tasks if tasks is not None else getattr(model, "task_names", None)
        if not names:
            raise ValueError("ModelRanker needs task names (pass tasks= or use model.task_names)")
        self.model, self.features = model, features
        self.tasks: tuple[str, ...] = tuple(names)
        self.batch_size = batch_size

    @torch.no_grad()
    def score(self, user: int, item_ids: np.ndarray, now: int) -> dict[str, np.ndarray]:
        item_ids = np.asarray(item_ids, np.int64)
        out = np.zeros((len(item_ids), len(self.tasks)), np.float64)
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            for lo in range(0, len(item_ids), self.batch_size):
                chunk = item_ids[lo : lo + self.batch_size]
                dense, sparse = self.features.build(user, chunk, now)
                logits = self.model(dense.to(device), sparse.to(device))
                if logits.shape != (len(chunk), len(self.tasks)):
                    raise ValueError(
                        f"ranker returned shape {tuple(logits.shape)}, expected "
                        f"({len(chunk)}, {len(self.tasks)})"
                    )
                out[lo : lo + len(chunk)] = torch.sigmoid(logits).double().cpu().numpy()
        finally:
            self.model.train(was_training)
        return {t: out[:, j] for j, t in enumerate(self.tasks)}


class SocialFeatureBuilder:
    """Model inputs of the synthetic social ranker from the entity tables.

    Args:
        users: ``user_id country age_bucket user_activity`` (Utf8 ids ``0..U-1``).
        posts: ``post_id author_id topic media_type post_length created_at``.
        follows: ``follower_id followee_id created_at`` (followee = author's user id).
        preprocessor: the ranker's fitted preprocessor (dense ``post_age_hours
            author_followers_log user_follow_count_log post_length``, sparse ``user_id post_id
            author_id topic media_type country age_bucket user_activity is_following``).

    Raises :class:`UnknownUserError` for a user id outside the users table.
    """

    def __init__(
        self,
        users: pl.DataFrame,
        posts: pl.DataFrame,
        follows: pl.DataFrame,
        preprocessor: FittedPreprocessor,
    ) -> None:
        self.pre = preprocessor
        self.spec = preprocessor.feature_spec()
        multi = [f.name for f in self.spec.sparse if f.multi_hot]
        if multi:
            raise ValueError(f"SocialFeatureBuilder supports single-valued features, got {multi}")
        u = users.with_columns(pl.col("user_id").cast(pl.Int64)).sort("user_id")
        self.user_rows = u.select(
            pl.col("country").cast(pl.Utf8),
            pl.col("age_bucket").cast(pl.Utf8),
            pl.col("user_activity").cast(pl.Utf8),
        )
        self.n_users = u.height
        p = posts.with_columns(pl.col("post_id").cast(pl.Int64)).sort("post_id")
        self.post_rows = p.select(
            pl.col("author_id").cast(pl.Utf8),
            pl.col("topic").cast(pl.Utf8),
            pl.col("media_type").cast(pl.Utf8),
            pl.col("post_length").cast(pl.Float64),
        )
        self.post_author = p["author_id"].cast(pl.Int64).to_numpy()
        self.post_created = p["created_at"].cast(pl.Int64).to_numpy()
        f = follows.select(
            pl.col("follower_id").cast(pl.Int64),
            pl.col("followee_id").cast(pl.Int64),
            pl.col("created_at").cast(pl.Int64),
        )
        by_follower = f.sort(["follower_id", "created_at"])
        self.f_follower = by_follower["follower_id"].to_numpy()
        self.f_followee = by_follower["followee_id"].to_numpy()
        self.f_created = by_follower["created_at"].to_numpy()
        by_followee = f.sort(["followee_id", "created_at"])
        self.e_followee = by_followee["followee_id"].to_numpy()
        self.e_created = by_followee["created_at"].to_numpy()
        # Packed (followee, created) keys, sorted, for point-in-time follower counts.
        self._t0 = int(self.e_created.min(initial=0)) - 1
        self._span = int(self.e_created.max(initial=0)) - self._t0 + 1
        self.e_keys = self.e_followee * self._span + (self.e_created - self._t0)

    def _followers_at(self, authors: np.ndarray, now: int) -> np.ndarray:
        """Followers of each author (``N`` user ids) with ``created_at <= now``."""
        t = min(max(int(now) - self._t0, 0), self._span - 1)
        lo = np.searchsorted(self.e_followee, authors, side="left")
        hi = np.searchsorted(self.e_keys, authors * self._span + t, side="right")
        return hi - lo

    def raw_frame(self, user: int, item_ids: np.ndarray, now: int) -> pl.DataFrame:
        """The raw feature rows (``N`` rows, schema columns) for ``user`` x ``item_ids``."""
        if not 0 <= user < self.n_users:
            raise UnknownUserError(f"user {user} is not in the users table (0..{self.n_users - 1})")
        items = np.asarray(item_ids, np.int64)
        if len(items) and (items.min() < 0 or items.max() >= len(self.post_author)):
            raise ValueError(f"item ids must be in [0, {len(self.post_author)})")
        lo = np.searchsorted(self.f_follower, user, side="left")
        hi = np.searchsorted(self.f_follower, user, side="right")
        active = self.f_created[lo:hi] <= now
        followees = self.f_followee[lo:hi][active]
        authors = self.post_author[items]
        uniq, inv = np.unique(authors, return_inverse=True)
        followers = self._followers_at(uniq, now)[inv]
        n = len(items)
        posts = self.post_rows[items]
        urow = self.user_rows.row(user)
        return pl.DataFrame(
            {
                "post_age_hours": (now - self.post_created[items]) / 3600.0,
                "author_followers_log": np.log1p(followers.astype(np.float64)),
                "user_follow_count_log": np.full(n, np.log1p(float(len(followees)))),
                "post_length": posts["post_length"],
                "user_id": pl.repeat(str(user), n, eager=True, dtype=pl.Utf8),
                "post_id": pl.Series(items).cast(pl.Utf8),
                "author_id": posts["author_id"],
                "topic": posts["topic"],
                "media_type": posts["media_type"],
                "country": pl.repeat(urow[0], n, eager=True, dtype=pl.Utf8),
                "age_bucket": pl.repeat(urow[1], n, eager=True, dtype=pl.Utf8),
                "user_activity": pl.repeat(urow[2], n, eager=True, dtype=pl.Utf8),
                "is_following": pl.Series(np.isin(authors, followees).astype(np.int64)).cast(
                    pl.Utf8
                ),
            }
        )

    def build(
        self, user: int, item_ids: np.ndarray, now: int
    ) -> tuple[torch.Tensor, KeyedJaggedTensor]:
        """``(dense N x D float32, KJT)`` in the preprocessor's feature-spec order."""
        return frame_tensors(self.pre.transform(self.raw_frame(user, item_ids, now)), self.spec)


def frame_tensors(frame: pl.DataFrame, spec: FeatureSpec) -> tuple[torch.Tensor, KeyedJaggedTensor]:
    """A prepared frame (``N`` rows, single-valued sparse ids) -> ``(dense N x D, KJT)``.

    The KJT has one key per ``spec.sparse`` feature, in spec order, one id per row.
    """
    n = frame.height
    if spec.dense:
        dense = torch.from_numpy(
            np.ascontiguousarray(frame.select(spec.dense).to_numpy().astype(np.float32))
        )
    else:
        dense = torch.zeros((n, 0), dtype=torch.float32)
    keys = spec.sparse_names
    values = np.concatenate([frame[k].to_numpy().astype(np.int64) for k in keys])
    sparse = KeyedJaggedTensor(
        keys=keys,
        values=torch.from_numpy(values),
        lengths=torch.ones(len(keys) * n, dtype=torch.int32),
        stride=n,
    )
    return dense, sparse
