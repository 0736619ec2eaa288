"""Retrieval data in memory: a per-user chronological split, id maps, histories, feature tables.

:func:`build_retrieval_data` turns one raw frame of interactions (all chunks of a reader or of
the synthetic generator, concatenated: ML-100K and the small social sets fit in memory easily)
into everything a two-tower run and its baselines need:

* ``frame`` rows are filtered to interactions (every row, or rows where any of
  ``positive_labels`` is > 0) and split per user in time
  (:func:`recsys.data.interactions.assign_per_user_split`: 80/10/10 by default, ties in file
  order, users with fewer than ``min_interactions`` rows all in train);
* users and items get contiguous indices (:class:`~recsys.data.interactions.IdMap` over all
  splits, so every item of the corpus has a row in the catalog);
* side features are categorical: every value seen in the *train* split gets an id ``>= 1``,
  anything else (unseen, null) is ``0``. Each user's (item's) value is taken from its first
  row in file order (side features are static per entity in both sources);
* training pairs are the train rows, each with its user's leakage-free history (items strictly
  earlier in time, :func:`recsys.data.history.build_histories`); at evaluation time the
  history is the user's last ``history_len`` items of train (for valid) or of train + valid
  (for test).

Side features that the frame does not have (a MovieLens "latest" release has no user
demographics) are absent, not an error: they are dropped from the spec the data carries
(``RetrievalData.spec``, so the model is built without them) and listed in
``summary["absent_features"]``. The user, item and time columns are required. An empty list
(a movie with "(no genres listed)") is a valid value: the item's bag is empty.

Feature names in the KJTs: ``user``, ``history`` and the user side features on the user side;
``item``, the item side features and the multi-valued item features on the item side.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys.data.history import build_histories
from recsys.data.interactions import IdMap, assign_per_user_split, pairs_to_csr
from recsys.data.tables import FeatureTable, TrainingPairs, jagged
from recsys.types import DataError

__all__ = ["RetrievalData", "RetrievalDataSpec", "build_retrieval_data"]

log = logging.getLogger(__name__)

_U, _I, _S = "__u", "__i", "__split"
SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class RetrievalDataSpec:
    """Which columns of the raw frame mean what.

    Attributes:
        user, item, timestamp, order: column names (``order``: file order, ties in time).
        user_features: single-valued categorical user columns.
        item_features: single-valued categorical item columns.
        item_multi_features: list-valued categorical item columns (e.g. ``genres``).
        positive_labels: keep rows where any of these is > 0; empty: every row is one.
        fractions, min_interactions: the per-user split.
        history_len: items kept in a history bag.
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    order: str = "_row"
    user_features: list[str] = field(default_factory=list)
    item_features: list[str] = field(default_factory=list)
    item_multi_features: list[str] = field(default_factory=list)
    positive_labels: list[str] = field(default_factory=list)
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    min_interactions: int = 5
    history_len: int = 50

    def __post_init__(self) -> None:
        if self.history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {self.history_len}")
        names = ["user", "history", *self.user_features, "item", *self.item_features]
        names += self.item_multi_features
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be distinct (and not user/history/item): {names}")

    def columns(self) -> list[str]:
        """The raw columns read."""
        cols = [*self.required_columns(), *self.user_features]
        cols += [*self.item_features, *self.item_multi_features]
        return list(dict.fromkeys(cols))

    def required_columns(self) -> list[str]:
        """The columns without which there is no interaction to split."""
        cols = [self.user, self.item, self.timestamp, self.order, *self.positive_labels]
        return list(dict.fromkeys(cols))

    def present_in(self, columns: Sequence[str]) -> RetrievalDataSpec:
        """This spec without the side features that ``columns`` lacks."""
        have = set(columns)
        return dataclasses.replace(
            self,
            user_features=[f for f in self.user_features if f in have],
            item_features=[f for f in self.item_features if f in have],
            item_multi_features=[f for f in self.item_multi_features if f in have],
        )


def _single(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ones(ids.shape[0], dtype=np.int32), ids.astype(np.int64)


def _list_bags(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths, values)`` of a ``List(Int64)`` series; a null or empty list is an empty bag
    (whatever ``explode`` makes of empty lists in the installed polars)."""
    series = series.fill_null([]).list.drop_nulls()
    lengths = series.list.len().to_numpy().astype(np.int32)
    values = series.explode().drop_nulls().to_numpy().astype(np.int64)
    if values.shape[0] != int(lengths.sum()):
        raise RuntimeError(f"list bags disagree: {values.shape[0]} values, {lengths.sum()} slots")
    return lengths, values


def _multi_bags(lists: pl.Series, vocab: IdMap, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths n_rows, codes)`` of one list-valued column of ``n_rows`` entity rows: codes
    ``1..V`` of the values in ``vocab``; unknown values and nulls are left out of the bag, and an
    empty list is an empty bag."""
    flat = (
        pl.DataFrame({"v": lists.fill_null([])})
        .with_row_index("owner")
        .explode("v")
        .drop_nulls("v")
    )
    codes = vocab.to_index(flat["v"].cast(pl.Utf8), strict=False) + 1
    owner = flat["owner"].to_numpy().astype(np.int64)
    keep = codes > 0
    return np.bincount(owner[keep], minlength=n_rows).astype(np.int32), codes[keep]


@dataclass
class RetrievalData:
    """Everything a retrieval run reads, in memory (see the module docstring).

    Attributes:
        users, items: id maps (``n_users``, ``n_items``).
        splits: ``{"train" | "valid" | "test": n_users x n_items binary CSR}``.
        catalog: item ``j``'s features in row ``j``.
        train_pairs: one row per train interaction, user side with its history.
        user_codes: ``{feature: n_users int64}`` (``user`` and the side features).
        cardinalities: ``{feature: table rows}`` of every user- and item-side feature.
        multi_features: the multi-valued feature names (``history`` and item lists).
        eval_history: ``{"valid" | "test": (lengths n_users, values)}``.
        summary: facts for ``metrics.json``.
        vocabularies: ``{side feature: IdMap}`` of the train values; a value's code is its
            index + 1 (0: unseen or missing), what serving maps raw values with.
    """

    spec: RetrievalDataSpec
    users: IdMap
    items: IdMap
    splits: dict[str, sp.csr_matrix]
    catalog: FeatureTable
    train_pairs: TrainingPairs
    user_codes: dict[str, np.ndarray]
    cardinalities: dict[str, int]
    multi_features: tuple[str, ...]
    eval_history: dict[str, tuple[np.ndarray, np.ndarray]]
    summary: dict[str, Any]
    vocabularies: dict[str, IdMap] = field(default_factory=dict)

    @property
    def user_keys(self) -> list[str]:
        return ["user", "history", *self.spec.user_features]

    @property
    def item_keys(self) -> list[str]:
        return ["item", *self.spec.item_features, *self.spec.item_multi_features]

    def known(self, split: str) -> sp.csr_matrix:
        """Interactions known before ``split`` (valid: train; test: train + valid)."""
        if split == "valid":
            return self.splits["train"]
        if split == "test":
            return (self.splits["train"] + self.splits["valid"]).sign().tocsr()
        raise ValueError(f"split must be valid or test, got {split!r}")

    def user_table(self, users: np.ndarray, split: str) -> FeatureTable:
        """User-side features of ``users`` (``U`` indices) as known at the start of ``split``."""
        lengths, values = self.eval_history[split]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        sel_len = lengths[users]
        idx = np.concatenate(
            [np.arange(starts[u], starts[u] + n) for u, n in zip(users, sel_len)] or [[]]
        ).astype(np.int64)
        bags = [_single(self.user_codes["user"][users]), (sel_len, values[idx])]
        bags += [_single(self.user_codes[f][users]) for f in self.spec.user_features]
        dense = torch.zeros(len(users), 0)
        return FeatureTable(dense, jagged(self.user_keys, bags))

    def user_table_at(self, frame: pl.DataFrame, now: int) -> FeatureTable:
        """User-side features of every user (row ``u`` = user index ``u``), the history being
        the last ``history_len`` interactions of ``frame`` (the raw events this data was built
        from) strictly before unix time ``now``."""
        spec = self.spec
        if spec.positive_labels:
            frame = frame.filter(pl.any_horizontal(pl.col(c) > 0 for c in spec.positive_labels))
        frame = frame.filter(pl.col(spec.timestamp) < now)
        n_users = len(self.users)
        last = (
            frame.select(
                pl.Series(_U, self.users.to_index(frame[spec.user].cast(pl.Utf8))),
                pl.Series(_I, self.items.to_index(frame[spec.item].cast(pl.Utf8))),
                pl.col(spec.timestamp).alias("t"),
                pl.col(spec.order).alias("o"),
            )
            .sort([_U, "t", "o"])
            .group_by(_U, maintain_order=True)
            .agg(pl.col(_I).tail(spec.history_len).alias("h"))
        )
        per_user = pl.DataFrame({_U: np.arange(n_users, dtype=np.int64)}).join(
            last, on=_U, how="left", maintain_order="left"
        )
        bags = [_single(self.user_codes["user"]), _list_bags(per_user["h"])]
        bags += [_single(self.user_codes[f]) for f in spec.user_features]
        return FeatureTable(torch.zeros(n_users, 0), jagged(self.user_keys, bags))


def _vocab_codes(values: pl.Series, vocab: IdMap) -> tuple[np.ndarray, int]:
    """Codes of ``values``: ``1..V`` for values in ``vocab``, 0 otherwise; and ``V + 1``."""
    codes = vocab.to_index(values.cast(pl.Utf8), strict=False) + 1
    return codes.astype(np.int64), len(vocab) + 1


def _entity_rows(frame: pl.DataFrame, key: str, n: int) -> pl.DataFrame:
    """One row per entity index ``0..n-1`` (its first row in file order)."""
    first = frame.group_by(key, maintain_order=True).first().sort(key)
    if first.height != n:
        raise RuntimeError(f"expected {n} distinct {key}, got {first.height}")
    return first


def build_retrieval_data(frame: pl.DataFrame, spec: RetrievalDataSpec) -> RetrievalData:
    """Splits, indexes and featurizes ``frame`` (one row per event); see the module docstring.

    Raises:
        DataError: a missing user, item, time or label column, or no interaction left after
            filtering.
    """
    for col in spec.required_columns():
        if col not in frame.columns:
            raise DataError(f"missing column; columns: {frame.columns}", field=col)
    requested = [*spec.user_features, *spec.item_features, *spec.item_multi_features]
    spec = spec.present_in(frame.columns)
    absent = [f for f in requested if f not in frame.columns]
    if absent:
        log.warning("side features absent from the data, trained without them: %s", absent)
    rows_read = frame.height
    frame = frame.select(spec.columns())
    if spec.positive_labels:
        frame = frame.filter(pl.any_horizontal(pl.col(c) > 0 for c in spec.positive_labels))
    if frame.height == 0:
        raise DataError(f"no interactions (positive labels {spec.positive_labels})", field=None)
    users = IdMap.from_values(frame[spec.user].cast(pl.Utf8))
    items = IdMap.from_values(frame[spec.item].cast(pl.Utf8))
    split = assign_per_user_split(
        frame, spec.user, spec.timestamp, spec.order, spec.fractions, spec.min_interactions
    )
    frame = frame.with_columns(
        pl.Series(_U, users.to_index(frame[spec.user].cast(pl.Utf8))),
        pl.Series(_I, items.to_index(frame[spec.item].cast(pl.Utf8))),
        split.alias(_S),
    )
    shape = (len(users), len(items))
    splits = {}
    for code, name in enumerate(SPLIT_NAMES):
        part = frame.filter(pl.col(_S) == code)
        splits[name] = pairs_to_csr(part[_U].to_numpy(), part[_I].to_numpy(), shape)
    train = frame.filter(pl.col(_S) == 0)

    # Static side features, vocabularies from the train split (0 = unseen or missing).
    cards: dict[str, int] = {"user": len(users), "history": len(items), "item": len(items)}
    user_rows = _entity_rows(frame, _U, len(users))
    user_codes = {"user": np.arange(len(users), dtype=np.int64)}
    vocabularies: dict[str, IdMap] = {}
    for f in [*spec.user_features, *spec.item_features]:
        vocabularies[f] = IdMap.from_values(train[f].cast(pl.Utf8))
    for f in spec.item_multi_features:
        vocabularies[f] = IdMap.from_values(train[f].explode().drop_nulls().cast(pl.Utf8))
    for f in spec.user_features:
        user_codes[f], cards[f] = _vocab_codes(user_rows[f], vocabularies[f])
    item_rows = _entity_rows(frame, _I, len(items))
    item_bags = [_single(np.arange(len(items), dtype=np.int64))]
    for f in spec.item_features:
        codes, cards[f] = _vocab_codes(item_rows[f], vocabularies[f])
        item_bags.append(_single(codes))
    for f in spec.item_multi_features:
        cards[f] = len(vocabularies[f]) + 1
        item_bags.append(_multi_bags(item_rows[f], vocabularies[f], len(items)))
    item_keys = ["item", *spec.item_features, *spec.item_multi_features]
    catalog = FeatureTable(torch.zeros(len(items), 0), jagged(item_keys, item_bags))

    # Training pairs: train rows with their leakage-free histories (strictly earlier items).
    hist = build_histories(
        frame.select(_U, _I, spec.timestamp, spec.order),
        _U,
        _I,
        spec.timestamp,
        order=spec.order,
        max_len=spec.history_len,
    ).filter(split == 0)
    u = hist[_U].to_numpy()
    bags = [_single(u), _list_bags(hist["history"])]
    bags += [_single(user_codes[f][u]) for f in spec.user_features]
    user_keys = ["user", "history", *spec.user_features]
    pairs = TrainingPairs(
        FeatureTable(torch.zeros(len(u), 0), jagged(user_keys, bags)),
        torch.from_numpy(hist[_I].to_numpy().astype(np.int64)),
    )

    # Evaluation histories: the last history_len items known before valid / test.
    eval_history = {}
    for name, upto in (("valid", 0), ("test", 1)):
        last = (
            frame.filter(pl.col(_S) <= upto)
            .sort([_U, spec.timestamp, spec.order])
            .group_by(_U, maintain_order=True)
            .agg(pl.col(_I).tail(spec.history_len).alias("h"))
        )
        per_user = pl.DataFrame({_U: np.arange(len(users), dtype=np.int64)}).join(
            last, on=_U, how="left", maintain_order="left"
        )
        eval_history[name] = _list_bags(per_user["h"])
    summary = {
        "rows_read": rows_read,
        "interactions": {n: int(splits[n].nnz) for n in SPLIT_NAMES},
        "events": {n: int((split == c).sum()) for c, n in enumerate(SPLIT_NAMES)},
        "users": len(users),
        "items": len(items),
        "cardinalities": dict(cards),
        "history_len": spec.history_len,
        "positive_labels": list(spec.positive_labels),
        "absent_features": absent,
    }
    return RetrievalData(
        spec=spec,
        users=users,
        items=items,
        splits=splits,
        catalog=catalog,
        train_pairs=pairs,
        user_codes=user_codes,
        cardinalities=cards,
        multi_features=("history", *spec.item_multi_features),
        eval_history=eval_history,
        summary=summary,
        vocabularies=vocabularies,
    )
