"""A two-tower export's request inputs: raw user and item ids -> the towers' feeds.

The exporter stores what a request needs under ``retrieval/`` (``manifest.preprocessing``):
``users.parquet`` (``index``, raw ``id``, ``user``, one code column per user side feature,
``history``: the user's last ``history_len`` engaged item indices at export time),
``items.parquet`` (``index``, raw ``id``, ``item``, one code column per item side feature, one
list column per multi-valued item feature) and ``vocab/<feature>.parquet`` (``value`` ->
``code``; code 0 is unseen or missing). :class:`TwoTowerInputs` holds them as NumPy arrays and
dicts and builds:

* user feeds of requests ``{"user_id": raw id, "history": [raw item ids] (optional),
  <user side feature>: raw value (optional)}``: ``user.ids`` (the user index, one per row),
  ``history.ids/lengths`` (the stored history, or the request's: unknown items dropped and
  counted as ``dropped``, the last ``history_len`` kept), one pair per side feature (the stored
  code, or the request's value through the vocabulary: unseen -> 0, counted as ``unseen``; a
  side feature or history sent as null is the same as one not sent: the stored one is used).
  An unknown user is a :class:`RequestError` naming ``user_id`` (the user table has no
  out-of-vocabulary row);
* item feeds of raw item ids (``item.ids``, side-feature codes, multi-valued code lists), for
  encoding items through the item tower; an unknown item is a :class:`RequestError`.

Ids are compared as strings (an integer id is its decimal string), like the ranker's features.

Example::

    inputs = TwoTowerInputs.from_manifest(manifest, export_dir)
    feeds = inputs.user_feeds([{"user_id": "42", "history": ["7", "9"]}])
    feeds["history.ids"], feeds["history.lengths"]      # array([6, 8]), array([2], int32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.export.manifest import Manifest, ManifestError, ids_input, lengths_input
from serving.inference.columns import (
    RequestCounters,
    categorical_column,
    check_row_count,
    rows_to_columns,
)
from serving.inference.errors import RequestError

__all__ = ["Jagged", "TwoTowerInputs"]


class Jagged:
    """Per-row lists of int64 as ``offsets`` (``R + 1``) and ``values``; ``take`` gathers rows.

    Example::

        bags = Jagged.from_arrow(table.column("history"))
        lengths, values = bags.take(np.array([3, 0]))
    """

    def __init__(self, offsets: np.ndarray, values: np.ndarray) -> None:
        self.offsets = offsets.astype(np.int64, copy=False)
        self.values = values.astype(np.int64, copy=False)

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array) -> Jagged:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        array = array.cast(pa.large_list(pa.int64()))
        if array.null_count:
            raise ManifestError(f"list column has {array.null_count} null rows")
        offsets = np.asarray(array.offsets.to_numpy(), dtype=np.int64)
        values = array.values.to_numpy(zero_copy_only=False)
        return cls(offsets - offsets[0], values[offsets[0] : offsets[-1]])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lengths R int32, values)`` of ``rows`` (indices), in order."""
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        total = int(lengths.sum())
        base = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return lengths.astype(np.int32), self.values[base + np.arange(total)]


def _read(path: Path, needed: Sequence[str]) -> pa.Table:
    if not path.exists():
        raise ManifestError(f"{path} is missing")
    table = pq.read_table(path)
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: columns {missing} are missing (has {table.column_names})")
    return table


def _id_index(table: pa.Table, path: Path) -> tuple[list[str], dict[str, int]]:
    index = table.column("index").to_numpy()
    if not np.array_equal(index, np.arange(len(index))):
        raise ManifestError(f"{path}: column index must be 0 .. {len(index) - 1} in order")
    ids = table.column("id").to_pylist()
    lookup = dict(zip(ids, range(len(ids))))
    if len(lookup) != len(ids) or None in lookup:
        raise ManifestError(f"{path}: raw ids must be distinct and non-null")
    return ids, lookup


class TwoTowerInputs:
    """The user and item tables of a two-tower export (see the module docstring).

    Attributes:
        user_keys, item_keys: the towers' sparse features, in input order.
        history_len: the most items a history bag holds.
        item_ids: raw item id of each item index (``N``).
        counters: ``requests``, ``rows``, ``dropped`` (history items not in the catalog),
            ``unseen`` (side-feature values not in the vocabulary), ``absent``.
    """

    def __init__(self, manifest: Manifest, export_dir: Path, max_rows: int = 10_000) -> None:
        if manifest.kind != "two_tower":
            raise ManifestError(f"{export_dir}: a {manifest.kind} export, not a two-tower")
        pre = manifest.preprocessing
        spec = manifest.feature_spec
        self.max_rows = max_rows
        try:
            self.history_len = int(pre["history_len"])
            self.user_features = list(pre["user_features"])
            self.item_features = list(pre["item_features"])
            self.item_multi = list(pre["item_multi_features"])
            self.cardinalities = {k: int(v) for k, v in spec["cardinalities"].items()}
            users_path, items_path = export_dir / pre["users"], export_dir / pre["items"]
            vocab_files = dict(pre["vocab"])
        except KeyError as exc:
            raise ManifestError(f"{export_dir}: preprocessing lacks {exc}") from exc
        self.user_keys = ["user", "history", *self.user_features]
        self.item_keys = ["item", *self.item_features, *self.item_multi]
        if list(spec["user"]) != self.user_keys or list(spec["item"]) != self.item_keys:
            raise ManifestError(
                f"{export_dir}: feature spec {spec['user']} / {spec['item']} does not match the "
                f"preprocessing's {self.user_keys} / {self.item_keys}"
            )
        users = _read(users_path, ["index", "id", "user", "history", *self.user_features])
        items = _read(items_path, ["index", "id", "item", *self.item_features, *self.item_multi])
        self.user_ids, self._user_index = _id_index(users, users_path)
        self.item_ids, self._item_index = _id_index(items, items_path)
        self._user_codes = {f: users.column(f).to_numpy() for f in ["user", *self.user_features]}
        self._history = Jagged.from_arrow(users.column("history"))
        self._item_codes = {f: items.column(f).to_numpy() for f in ["item", *self.item_features]}
        self._item_bags = {f: Jagged.from_arrow(items.column(f)) for f in self.item_multi}
        self._vocab: dict[str, dict[str | None, int]] = {}
        for f in self.user_features:
            if f not in vocab_files:
                raise ManifestError(f"{export_dir}: no vocabulary file for user feature {f!r}")
            table = _read(export_dir / vocab_files[f], ["value", "code"])
            lookup: dict[str | None, int] = dict(
                zip(table.column("value").to_pylist(), table.column("code").to_pylist())
            )
            lookup[None] = 0
            self._vocab[f] = lookup
        self._check_ranges(export_dir)
        self.counters = RequestCounters()

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, export_dir: Path, max_rows: int = 10_000
    ) -> TwoTowerInputs:
        """The inputs of a loaded two-tower manifest (tables read from ``export_dir``)."""
        return cls(manifest, Path(export_dir), max_rows)

    def _check_ranges(self, export_dir: Path) -> None:
        arrays = {**self._user_codes, **self._item_codes, "history": self._history.values}
        arrays |= {f: bags.values for f, bags in self._item_bags.items()}
        arrays |= {f: np.array(list(v.values())) for f, v in self._vocab.items()}
        for f, codes in arrays.items():
            card = self.cardinalities.get(f)
            if card is None:
                raise ManifestError(f"{export_dir}: no cardinality for feature {f!r}")
            if codes.size and (codes.min() < 0 or codes.max() >= card):
                raise ManifestError(
                    f"{export_dir}: feature {f!r} has codes outside [0, {card}) in its table"
                )

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    # ------------------------------------------------------------------- users
    def user_index(self, user_id: object, row: int | None = None) -> int:
        """The index of a raw user id.

        Raises:
            RequestError: an unknown id, or one that is not a string or an integer.
        """
        try:
            (key,) = categorical_column([user_id], "user_id")
        except RequestError as err:
            raise RequestError(err.reason, field="user_id", row=row) from None
        index = self._user_index.get(key) if key is not None else None
        if index is None:
            raise RequestError(
                f"unknown user {user_id!r} ({len(self.user_ids)} users in the export)",
                field="user_id",
                row=row,
            )
        return index

    def stored_history(self, user: int) -> np.ndarray:
        """The item indices of a user's stored history (at most ``history_len``)."""
        return self._history.row(user)

    def _history_override(self, value: object, row: int) -> tuple[np.ndarray, int]:
        if not isinstance(value, (list, tuple)):
            raise RequestError(
                f"expected a list of item ids, got {type(value).__name__}", field="history", row=row
            )
        try:
            keys = categorical_column(list(value), "history")
        except RequestError as err:
            raise RequestError(f"list element: {err.reason}", field="history", row=row) from None
        found = [self._item_index.get(k, -1) if k is not None else -1 for k in keys]
        indices = np.array(found, dtype=np.int64)
        known = indices[indices >= 0]
        return known[-self.history_len :], int(len(indices) - len(known))

    def user_feeds(self, requests: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """The user tower's feeds for ``B`` requests (see the module docstring).

        Returns ``{"user.ids": B int64, "user.lengths": B int32, "history.ids": int64,
        "history.lengths": B int32, "<f>.ids": B, "<f>.lengths": B}``.

        Raises:
            RequestError: an empty or oversize batch, an unknown key or user, a wrong type.
        """
        features = ["user_id", "history", *self.user_features]
        columns = rows_to_columns(requests, features, max_rows=self.max_rows)
        n = columns.n
        if columns.absent["user_id"]:
            row = columns.column("user_id").index(None)
            raise RequestError("is required", field="user_id", row=row)
        users = np.fromiter(
            (self.user_index(u, i) for i, u in enumerate(columns.column("user_id"))), np.int64, n
        )
        ones = np.ones(n, dtype=np.int32)
        history = columns.column("history")
        dropped = 0
        if all(h is None for h in history):
            lengths, values = self._history.take(users)
        else:
            bags = []
            for i, (user, h) in enumerate(zip(users.tolist(), history)):
                if h is None:
                    bags.append(self.stored_history(user))
                else:
                    bag, lost = self._history_override(h, i)
                    bags.append(bag)
                    dropped += lost
            lengths = np.fromiter(map(len, bags), np.int32, n)
            values = np.concatenate(bags).astype(np.int64)
        feeds = {
            ids_input("user"): self._user_codes["user"][users],
            lengths_input("user"): ones,
            ids_input("history"): values,
            lengths_input("history"): lengths,
        }
        unseen: dict[str, int] = {}
        for f in self.user_features:
            codes = self._user_codes[f][users].copy()
            sent = columns.column(f)
            given = [i for i in range(n) if sent[i] is not None] if columns.absent[f] < n else []
            if given:
                keys = categorical_column([sent[i] for i in given], f)
                vocab = self._vocab[f]
                new = np.fromiter((vocab.get(k, 0) for k in keys), np.int64, len(keys))
                codes[given] = new
                unseen[f] = int(np.count_nonzero(new == 0))
            feeds[ids_input(f)] = codes
            feeds[lengths_input(f)] = ones
        self.counters.record(n, {"dropped": {"history": dropped}, "unseen": unseen, "absent": {}})
        return feeds

    # ------------------------------------------------------------------- items
    def item_indices(self, item_ids: Sequence[object], field: str = "item_ids") -> np.ndarray:
        """``N`` int64 item indices of raw item ids.

        Raises:
            RequestError: an empty or oversize list, an unknown id or a wrong type (names
                ``field`` and the position).
        """
        if isinstance(item_ids, (str, bytes)) or not isinstance(item_ids, Sequence):
            raise RequestError(
                f"must be a list of item ids, got {type(item_ids).__name__}", field=field
            )
        check_row_count(len(item_ids), self.max_rows, field)
        keys = categorical_column(list(item_ids), field)
        out = np.fromiter((self._item_index.get(k, -1) for k in keys), np.int64, len(keys))
        if (out < 0).any():
            i = int(np.flatnonzero(out < 0)[0])
            raise RequestError(f"unknown item {item_ids[i]!r}", field=field, row=i)
        return out

    def item_feeds(self, item_ids: Sequence[object]) -> dict[str, np.ndarray]:
        """The item tower's feeds for ``N`` raw item ids: ``item.ids`` / ``.lengths``, each
        side feature's codes, each multi-valued feature's code lists."""
        return self.item_feeds_of(self.item_indices(item_ids))

    def item_feeds_of(self, items: np.ndarray) -> dict[str, np.ndarray]:
        """The item tower's feeds for ``N`` item indices."""
        ones = np.ones(len(items), dtype=np.int32)
        feeds: dict[str, np.ndarray] = {}
        for f in ["item", *self.item_features]:
            feeds[ids_input(f)] = self._item_codes[f][items]
            feeds[lengths_input(f)] = ones
        for f in self.item_multi:
            lengths, values = self._item_bags[f].take(items)
            feeds[ids_input(f)] = values
            feeds[lengths_input(f)] = lengths
        return feeds

    def raw_item_ids(self, items: np.ndarray) -> list[str]:
        """The raw ids of item indices."""
        return [self.item_ids[i] for i in np.asarray(items).tolist()]

    def describe(self) -> dict[str, Any]:
        return {
            "users": len(self.user_ids),
            "items": self.num_items,
            "history_len": self.history_len,
            "user_keys": self.user_keys,
            "item_keys": self.item_keys,
        }
