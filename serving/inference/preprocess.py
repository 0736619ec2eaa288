"""Request-time preprocessing of a ranker export: raw feature rows -> the ONNX model's feeds.

:class:`RankerPreprocessor` applies the training pipeline's fitted mapping
(``recsys.data.preprocess.FittedPreprocessor`` as saved in the export's ``preprocess/`` folder
and described by ``manifest.preprocessing``) with NumPy, and lays the result out as the
prepared-data loader does (one id per row for single-valued features, any count for multi-hot
ones). The semantics are the training pipeline's, bit for bit:

* dense: null, missing, NaN and +-inf -> ``fill``; then ``sign(x) * log1p(|x|)`` where the
  feature was fitted with log1p; then ``(x - mean) / std`` in float64, cast to float32.
* categorical values compare as strings (an integer is its decimal string); null -> id ``0``,
  a value not in the vocabulary -> ``1`` (counted as ``unseen``), vocabulary ids from the
  export's parquet files; hashed features ``2 + fnv1a64(utf8) % buckets``.
* multi-hot: a list per row (or one separator-joined string, split as the raw reader splits
  it), null -> an empty list, a null element -> id ``0``.
* **a feature absent from a row is treated as null** (missing: fill for dense, id 0 for
  categorical, an empty list for multi-hot) and counted per feature as ``absent`` in
  :attr:`RankerPreprocessor.counters`, so a client that stops sending a feature shows up on
  ``/metrics`` rather than failing.

Feeds (``manifest.py``'s model inputs): ``dense`` ``B x D`` float32 (omitted when ``D == 0``),
and per sparse feature ``f`` in the feature spec's order ``<f>.ids`` (int64, the ids of all
rows concatenated) and ``<f>.lengths`` (``B`` int32).

Example::

    pre = RankerPreprocessor.from_manifest(load_manifest(export_dir), export_dir)
    feeds = pre.transform([{"user_id": 7, "topic": "travel", "post_age_hours": 1.5}])
    feeds["dense"].shape, feeds["topic.ids"]          # (1, 4), array([5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow.parquet as pq

from recsys.export.manifest import Manifest, ManifestError, ids_input, lengths_input
from serving.inference.columns import (
    RequestCounters,
    RowColumns,
    categorical_column,
    dense_column,
    multi_column,
    rows_to_columns,
)
from serving.inference.errors import RequestError
from serving.inference.hashing import fnv1a64

__all__ = [
    "ID_CONVENTION",
    "DenseTransform",
    "HashedMapping",
    "PreprocessSettings",
    "RankerPreprocessor",
    "VocabMapping",
]

T = TypeVar("T")
MISSING_ID, OOV_ID, FIRST_VOCAB_ID = 0, 1, 2
ID_CONVENTION = {"missing": MISSING_ID, "oov": OOV_ID, "first_vocab": FIRST_VOCAB_ID}
HASH_NAME = "fnv1a64"
HASH_CACHE_SIZE = 1 << 16
_INT_COLUMN = frozenset({int, type(None)})
_STR = {str}


@dataclass(frozen=True)
class PreprocessSettings:
    """Limits of a request.

    Attributes:
        max_rows: the most rows (candidates) one request may hold.
        ignored_keys: row keys accepted and ignored (e.g. ``request_id``); any other key that
            is not a raw feature of the model is a :class:`RequestError`.
    """

    max_rows: int = 10_000
    ignored_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")


@dataclass(frozen=True)
class DenseTransform:
    """One dense feature's fitted transform ``((log1p?)(fill(x)) - mean) / std``."""

    name: str
    fill: float
    log1p: bool
    mean: float
    std: float


@dataclass(frozen=True)
class VocabMapping:
    """A vocabulary feature: ``table`` maps a value to its id (``None`` -> 0, unseen -> 1).

    ``int_table`` maps the integers whose decimal string is a vocabulary value (``7`` for
    ``"7"``, not for ``"07"``) to the same ids, so a column of integers is looked up without
    turning each into a string."""

    name: str
    multi: bool
    cardinality: int
    table: dict[str | None, int]
    int_table: dict[int | None, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ints: dict[int | None, int] = {None: MISSING_ID}
        for value, i in self.table.items():
            if value and (value[0].isdigit() or value[0] == "-") and len(value) < 4000:
                try:
                    number = int(value)
                except ValueError:
                    continue
                if str(number) == value:
                    ints[number] = i
        object.__setattr__(self, "int_table", ints)

    def ids(self, values: list[str | None]) -> np.ndarray:
        """``N`` int64 ids of ``N`` values (strings or ``None``)."""
        return np.fromiter(map(self.table.get, values, repeat(OOV_ID)), np.int64, len(values))

    def lookup(self, col: Sequence[object]) -> np.ndarray:
        """``N`` int64 ids of ``N`` raw values, checked as :func:`categorical_column` checks
        them (the same ids as ``ids(categorical_column(col))``, without its pass per value).

        A column of ``int``/``None`` goes through :attr:`int_table`; any other column is
        looked up as it is: only strings and ``None`` can be found in :attr:`table`, so every
        other value comes back as unseen and only those are checked and converted.

        Raises:
            RequestError: a value that is not categorical (names the row and the feature).
        """
        n = len(col)
        if n and type(col[0]) is not str:
            types = set(map(type, col))
            if types <= _INT_COLUMN:
                return np.fromiter(map(self.int_table.get, col, repeat(OOV_ID)), np.int64, n)
        try:
            ids = np.fromiter(map(self.table.get, col, repeat(OOV_ID)), np.int64, n)
        except TypeError:  # an unhashable value (a list, a mapping): located and named
            return self.ids(categorical_column(list(col), self.name))
        mask = ids == OOV_ID
        if mask.any():
            unseen = mask.nonzero()[0]
            rest = [col[i] for i in unseen.tolist()]
            if set(map(type, rest)) != _STR:
                try:
                    ids[unseen] = self.ids(categorical_column(rest, self.name))
                except RequestError as err:
                    assert err.row is not None
                    row = int(unseen[err.row])
                    raise RequestError(err.reason, field=self.name, row=row) from None
        return ids


@dataclass(frozen=True)
class HashedMapping:
    """A hashed feature: id ``2 + fnv1a64(utf8(value)) % buckets``, ``None`` -> 0.

    The ids of values already seen are kept (up to ``HASH_CACHE_SIZE`` values, then the cache
    starts again), so a value repeated across requests is hashed once."""

    name: str
    multi: bool
    cardinality: int
    buckets: int
    cache: dict[str | None, int] = field(
        init=False, repr=False, compare=False, default_factory=lambda: {None: MISSING_ID}
    )

    def ids(self, values: list[str | None]) -> np.ndarray:
        """``N`` int64 ids of ``N`` values (strings or ``None``; each distinct value not in
        the cache hashed once).

        Raises:
            RequestError: a string that is not valid Unicode text (``row``: its position).
        """
        cache = self.cache
        ids = np.fromiter(map(cache.get, values, repeat(-1)), np.int64, len(values))
        todo = np.flatnonzero(ids < 0)
        if not todo.size:
            return ids
        missed = [values[i] for i in todo.tolist()]
        distinct = dict.fromkeys(missed)
        distinct.pop(None, None)
        keys = list(distinct)
        try:
            hashes = fnv1a64(keys)
        except UnicodeEncodeError:
            i = next(i for i, v in enumerate(values) if v is not None and not _encodable(v))
            raise RequestError("not valid Unicode text", field=self.name, row=i) from None
        codes = (hashes % np.uint64(self.buckets)).astype(np.int64) + FIRST_VOCAB_ID
        table: dict[str | None, int] = dict(zip(keys, codes.tolist()))
        table[None] = MISSING_ID
        ids[todo] = np.fromiter(map(table.__getitem__, missed), np.int64, len(missed))
        if len(cache) + len(table) > HASH_CACHE_SIZE:
            cache.clear()
            cache[None] = MISSING_ID
        cache.update(table)
        return ids

    def lookup(self, col: Sequence[object]) -> np.ndarray:
        """``N`` int64 ids of ``N`` raw values (checked and converted by
        :func:`categorical_column` first)."""
        return self.ids(categorical_column(list(col), self.name))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


CategoricalMapping = VocabMapping | HashedMapping


def _log1p(x: np.ndarray) -> np.ndarray:
    """``log1p`` of the C library, value by value: NumPy's SIMD ``log1p`` can differ from it in
    the last bit, and the training pipeline (Polars) uses the C library's."""
    flat = np.fromiter(map(math.log1p, x.ravel().tolist()), np.float64, x.size)
    return flat.reshape(x.shape)


class RankerPreprocessor:
    """Raw rows -> ranker feeds (see the module docstring for the semantics and layout).

    Args:
        dense: the dense features' transforms, in the model's order (``D``).
        categorical: the sparse features' mappings, in the model's order (single then multi).
        separators: multi-hot feature -> the raw reader's value separator (or ``None``).
        settings: request limits.

    Attributes:
        raw_features: the row keys the model reads (dense, then categorical).
        input_names: the feed names :meth:`transform` returns, in order.
        counters: ``requests``, ``rows``, ``absent`` and ``unseen`` per feature.
    """

    def __init__(
        self,
        dense: Sequence[DenseTransform],
        categorical: Sequence[CategoricalMapping],
        separators: Mapping[str, str | None] | None = None,
        settings: PreprocessSettings | None = None,
    ) -> None:
        self.dense = tuple(dense)
        self.categorical = tuple(categorical)
        self.separators = dict(separators or {})
        self.settings = settings or PreprocessSettings()
        self.raw_features = tuple([d.name for d in self.dense] + [c.name for c in categorical])
        if len(set(self.raw_features)) != len(self.raw_features):
            raise ManifestError(f"preprocessing names a feature twice: {self.raw_features}")
        self.input_names = (["dense"] if self.dense else []) + [
            name for c in self.categorical for name in (ids_input(c.name), lengths_input(c.name))
        ]
        self._fill = np.array([d.fill for d in self.dense], dtype=np.float64)[:, None]
        self._mean = np.array([d.mean for d in self.dense], dtype=np.float64)[:, None]
        self._std = np.array([d.std for d in self.dense], dtype=np.float64)[:, None]
        self._log = np.array([d.log1p for d in self.dense], dtype=bool)
        self.counters = RequestCounters()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_manifest(
        cls, manifest: Manifest, export_dir: Path, settings: PreprocessSettings | None = None
    ) -> RankerPreprocessor:
        """The preprocessor of a ranker export (vocabularies read from ``export_dir``).

        Raises:
            ManifestError: not a ranker export, or preprocessing that disagrees with the
                feature spec or with its own files (names the feature).
        """
        if manifest.kind != "ranker":
            raise ManifestError(f"{export_dir}: a {manifest.kind} export has no ranker")
        return cls.from_preprocessing(
            manifest.preprocessing, manifest.feature_spec, Path(export_dir), settings
        )

    @classmethod
    def from_preprocessing(
        cls,
        preprocessing: Mapping[str, Any],
        feature_spec: Mapping[str, Any],
        base_dir: Path,
        settings: PreprocessSettings | None = None,
    ) -> RankerPreprocessor:
        """Builds one from a manifest's ``preprocessing`` and ``feature_spec`` sections; vocab
        files are relative to ``base_dir``."""
        where = f"{base_dir}: preprocessing"
        try:
            if dict(preprocessing["id_convention"]) != ID_CONVENTION:
                raise ManifestError(
                    f"{where}: id convention {preprocessing['id_convention']} is not "
                    f"{ID_CONVENTION}"
                )
            raw = preprocessing["raw_schema"]
            raw_dense = list(raw.get("dense", []))
            raw_sparse = [*raw.get("sparse", []), *raw.get("multi", [])]
            spec_sparse = {f["name"]: f for f in feature_spec["sparse"]}
            if list(feature_spec["dense"]) != raw_dense or list(spec_sparse) != raw_sparse:
                raise ManifestError(
                    f"{where}: raw features dense {raw_dense} + categorical {raw_sparse} do not "
                    f"match the feature spec's {list(feature_spec['dense'])} + {list(spec_sparse)}"
                )
            dense = [_dense(name, preprocessing["dense"][name], where) for name in raw_dense]
            categorical, separators = [], {}
            for name in raw_sparse:
                entry = preprocessing["categorical"][name]
                mapping = _categorical(name, entry, base_dir, where)
                spec = spec_sparse[name]
                if (mapping.cardinality, mapping.multi) != (spec["cardinality"], spec["multi_hot"]):
                    raise ManifestError(
                        f"{where}: feature {name!r} has cardinality {mapping.cardinality}, "
                        f"multi {mapping.multi} but the feature spec says "
                        f"{spec['cardinality']}, {spec['multi_hot']}"
                    )
                categorical.append(mapping)
                if mapping.multi:
                    sep = entry.get("separator")
                    if sep is not None and (not isinstance(sep, str) or not sep):
                        raise ManifestError(f"{where}: feature {name!r} separator {sep!r}")
                    separators[name] = sep
        except KeyError as exc:
            raise ManifestError(f"{where}: missing key {exc}") from exc
        return cls(dense, categorical, separators, settings)

    # ----------------------------------------------------------------- applying
    def transform(
        self,
        rows: Sequence[Mapping[str, object]],
        shared: Mapping[str, object] | None = None,
    ) -> dict[str, np.ndarray]:
        """The model's feeds for ``B`` raw rows (mappings of raw feature name to value).

        ``shared`` holds raw features that are the same for every row (the user's, for the
        candidates of one user): each is transformed once and repeated, exactly as if every
        row carried it; a row's own key wins over it.

        Returns ``{"dense": B x D float32, "<f>.ids": int64, "<f>.lengths": B int32, ...}``
        in :attr:`input_names` order.

        Raises:
            RequestError: an empty or oversize request, an unknown key, a value of the wrong
                type (the message names the row and the feature; no row for a shared value).
        """
        columns = rows_to_columns(
            rows,
            self.raw_features,
            shared=shared,
            ignored=self.settings.ignored_keys,
            max_rows=self.settings.max_rows,
        )
        return self.transform_columns(columns)

    def transform_columns(self, columns: RowColumns) -> dict[str, np.ndarray]:
        """Like :meth:`transform` for a request already in columns (every raw feature in
        ``columns.values``, ``B`` values each, or in ``columns.shared``, one value)."""
        n = columns.n
        feeds: dict[str, np.ndarray] = {}
        if self.dense:
            feeds["dense"] = self._dense_matrix(columns)
        unseen: dict[str, int] = {}
        ones = np.ones(n, dtype=np.int32)
        for mapping in self.categorical:
            name = mapping.name
            if name in columns.shared:
                value = columns.shared[name]
                if isinstance(mapping, VocabMapping) and not mapping.multi:
                    ids = np.full(n, _vocab_id(mapping, value), dtype=np.int64)
                else:
                    ids, lengths = _once(self._categorical, mapping, [value])
                    if mapping.multi:
                        lengths, ids = np.repeat(lengths, n), np.tile(ids, n)
                    else:
                        ids = np.full(n, ids[0], dtype=np.int64)
            else:
                ids, lengths = self._categorical(mapping, columns.values[name])
            if isinstance(mapping, VocabMapping):
                unseen[name] = int(np.count_nonzero(ids == OOV_ID))
            feeds[ids_input(name)] = ids
            feeds[lengths_input(name)] = lengths if mapping.multi else ones
        self.counters.record(n, {"absent": columns.absent, "unseen": unseen})
        return feeds

    def _categorical(
        self, mapping: CategoricalMapping, col: list[Any]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(ids, lengths)`` of one column (``lengths`` ``None`` for a single-valued one)."""
        name = mapping.name
        if not mapping.multi:
            return mapping.lookup(col), None
        lengths, flat = multi_column(col, name, self.separators[name])
        try:
            return mapping.ids(flat), lengths
        except RequestError as err:
            assert err.row is not None
            row = int(np.searchsorted(np.cumsum(lengths), err.row, side="right"))
            raise RequestError(err.reason, field=name, row=row) from None

    def _dense_matrix(self, columns: RowColumns) -> np.ndarray:
        """``B x D`` float32: per-row features column by column, shared ones once."""
        n, shared = columns.n, columns.shared
        per_row = [j for j, d in enumerate(self.dense) if d.name not in shared]
        once = [j for j, d in enumerate(self.dense) if d.name in shared]
        if not once:
            return np.ascontiguousarray(self._standard(columns.values, per_row, n).T, np.float32)
        out = np.empty((n, len(self.dense)), dtype=np.float32)
        if per_row:
            out[:, per_row] = self._standard(columns.values, per_row, n).T
        out[:, once] = np.array([self._dense_value(j, shared[self.dense[j].name]) for j in once])
        return out

    def _dense_value(self, j: int, value: object) -> float:
        """Dense feature ``j``'s transform of one shared raw value, in Python floats: the same
        IEEE double operations as :meth:`_standard` (fill, the C library's ``log1p``,
        ``(x - mean) / std``), so the same bits."""
        d = self.dense[j]
        if value is None:
            x = math.nan
        elif type(value) is float:
            x = value
        else:
            x = float(_once(dense_column, [value], d.name)[0])
        if not math.isfinite(x):
            x = d.fill
        if d.log1p:
            x = math.copysign(math.log1p(abs(x)), x)
        return (x - d.mean) / d.std

    def _standard(self, values: Mapping[str, list[Any]], rows: list[int], n: int) -> np.ndarray:
        """The dense transforms of features ``rows`` (indices into :attr:`dense`) over ``n``
        raw values each: ``len(rows) x n`` float64."""
        x = np.empty((len(rows), n), dtype=np.float64)
        for k, j in enumerate(rows):
            name = self.dense[j].name
            x[k] = dense_column(values[name], name)
        x = np.where(np.isfinite(x), x, self._fill[rows])
        log = self._log[rows]
        if log.any():
            part = x[log]
            x[log] = np.copysign(_log1p(np.abs(part)), part)
        return (x - self._mean[rows]) / self._std[rows]


def _vocab_id(mapping: VocabMapping, value: object) -> int:
    """The id of one shared raw value of a single-valued vocabulary feature."""
    if value is None or type(value) is str:
        return mapping.table.get(value, OOV_ID)
    if type(value) is int:
        return mapping.int_table.get(value, OOV_ID)
    return int(_once(mapping.lookup, [value])[0])


def _once(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a shared value: a :class:`RequestError` loses its row (the value is
    every row's) and says the value was shared."""
    try:
        return fn(*args)
    except RequestError as err:
        raise RequestError(f"shared value: {err.reason}", field=err.field) from None


def _number(entry: Mapping[str, Any], key: str, where: str) -> float:
    value = float(entry[key])
    if not math.isfinite(value):
        raise ManifestError(f"{where}: {key} = {value} is not finite")
    return value


def _dense(name: str, entry: Mapping[str, Any], where: str) -> DenseTransform:
    where = f"{where}: dense feature {name!r}"
    std = _number(entry, "std", where)
    if std == 0:
        raise ManifestError(f"{where}: std is 0")
    fill, mean = _number(entry, "fill", where), _number(entry, "mean", where)
    return DenseTransform(name, fill, bool(entry["log1p"]), mean, std)


def _categorical(
    name: str, entry: Mapping[str, Any], base_dir: Path, where: str
) -> CategoricalMapping:
    where = f"{where}: feature {name!r}"
    multi, cardinality = bool(entry["multi"]), int(entry["cardinality"])
    if entry["kind"] == "hash":
        buckets = int(entry["buckets"])
        if entry.get("hash") != HASH_NAME or buckets < 1 or cardinality != FIRST_VOCAB_ID + buckets:
            raise ManifestError(
                f"{where}: hash {entry.get('hash')!r} with {buckets} buckets and cardinality "
                f"{cardinality} (expected {HASH_NAME}, cardinality 2 + buckets)"
            )
        return HashedMapping(name, multi, cardinality, buckets)
    if entry["kind"] != "vocab":
        raise ManifestError(f"{where}: unknown kind {entry['kind']!r}")
    path = base_dir / entry["file"]
    if not path.exists():
        raise ManifestError(f"{where}: vocabulary file {path} is missing")
    table = pq.read_table(path, columns=["value", "id"])
    values = table.column("value").to_pylist()
    ids = table.column("id").to_numpy()
    size = int(entry["vocab_size"])
    if len(values) != size or cardinality != FIRST_VOCAB_ID + size:
        raise ManifestError(
            f"{path}: {len(values)} values, the manifest says vocab_size {size} and "
            f"cardinality {cardinality}"
        )
    lookup: dict[str | None, int] = dict(zip(values, ids.tolist()))
    if (
        None in lookup
        or len(lookup) != size
        or len(np.unique(ids)) != size
        or (size and (ids.min() < FIRST_VOCAB_ID or ids.max() >= cardinality))
    ):
        raise ManifestError(
            f"{path}: values must be distinct and non-null, ids distinct in [2, {cardinality})"
        )
    lookup[None] = MISSING_ID
    return VocabMapping(name, multi, cardinality, lookup)
