"""Raw request values -> typed columns, with the checks and the counters of request-time inputs.

A request is a list of rows (mappings of raw feature name to value, the names of the training
data). :func:`rows_to_columns` turns it into one Python list per feature (a feature absent from
a row is treated as null, i.e. missing, and counted), rejecting an empty or oversize request and
keys that are not features. Values that are the same for every row (the user's features of a
ranking request, sent once as ``shared``, and features no row carries) stay one value, so they
cost nothing per row. The converters check and normalize one column:

* :func:`categorical_column`: strings (``str`` and its subclasses) stay, integers (``int``,
  numpy integers) become their decimal string (``7`` and ``"7"`` are the same value, as the
  training pipeline's ``cast(String)`` makes them), ``None`` stays (missing); booleans, floats,
  lists and mappings are a :class:`RequestError`.
* :func:`dense_column`: numbers (not booleans) and ``None`` -> ``float64`` (``None`` -> NaN,
  which the dense transform fills like any non-finite value); strings and the rest are errors.
* :func:`multi_column`: per row a list (or tuple) of categorical values, ``None`` (an empty
  list) or, when the feature has a separator, one separator-joined string split as the raw
  reader splits it (empty tokens dropped). Returns ``lengths`` (``B`` int32) and the flat
  values (``sum(lengths)``).

The checks look at ``set(map(type, column))`` first, so a well-typed column costs no Python
work per value beyond the one conversion it needs; a bad value is located only on the error
path. :class:`RequestCounters` is what the HTTP layer exposes on ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import contains, itemgetter
from typing import Any

import numpy as np

from serving.inference.errors import RequestError

__all__ = [
    "RequestCounters",
    "RowColumns",
    "categorical_column",
    "dense_column",
    "multi_column",
    "rows_to_columns",
]

_NONE = type(None)
_ABSENT = object()
_CATEGORICAL_FAST = frozenset({str, _NONE})
_DENSE_FAST = frozenset({float, int, _NONE})
_FLOAT_MAX = int(np.finfo(np.float64).max)


@dataclass
class RowColumns:
    """A request as columns.

    Every raw feature is in exactly one of ``values`` (one raw value per row) and ``shared``
    (one raw value for every row: a user-level feature sent once, or a feature no row has).

    Attributes:
        n: rows ``B``.
        values: feature -> ``B`` raw values (``None`` where the row lacks the feature).
        absent: feature -> rows that did not have the key (and got no shared value).
        shared: feature -> the one raw value of every row.
    """

    n: int
    values: dict[str, list[Any]]
    absent: dict[str, int]
    shared: dict[str, Any] = field(default_factory=dict)

    def column(self, feature: str) -> list[Any]:
        """The ``B`` raw values of ``feature`` (a shared value repeated)."""
        if feature in self.values:
            return self.values[feature]
        return [self.shared[feature]] * self.n


def check_row_count(n: int, max_rows: int, what: str = "rows") -> None:
    """Raises :class:`RequestError` for an empty request or one over ``max_rows``."""
    if n == 0:
        raise RequestError("is empty: send at least one row", field=what)
    if n > max_rows:
        raise RequestError(f"has {n} rows, more than the maximum of {max_rows}", field=what)


def _check_shared(
    shared: Mapping[str, object] | None, features: Sequence[str], ignored: frozenset[str]
) -> dict[str, object]:
    """The shared values of raw features (ignored keys dropped); an unknown key is an error."""
    if shared is None:
        return {}
    if not isinstance(shared, Mapping):
        raise RequestError(
            f"must map feature names to values, got {type(shared).__name__}", field="shared"
        )
    known = frozenset(features)
    out = {}
    for key, value in shared.items():
        if key in known:
            out[key] = value
        elif key not in ignored:
            raise RequestError(
                f"unknown feature {key!r}; the model reads {sorted(features)}", field=str(key)
            )
    return out


def rows_to_columns(
    rows: Sequence[Mapping[str, object]],
    features: Sequence[str],
    *,
    shared: Mapping[str, object] | None = None,
    ignored: Iterable[str] = (),
    max_rows: int,
) -> RowColumns:
    """One list per feature of ``rows`` (``B`` mappings), absent keys as ``None``.

    ``shared`` holds raw values of every row (a row's own key wins over it); a feature that is
    shared and in no row, or in no row at all, is returned in ``RowColumns.shared`` and costs
    no work per row. When every row has the same keys (the usual request), the columns are
    gathered in C (``operator.itemgetter``); otherwise row by row.

    Raises:
        RequestError: ``rows`` not a list of mappings, empty or longer than ``max_rows``
            (field ``rows``), ``shared`` not a mapping, or a key that is neither a feature nor
            in ``ignored`` (field: that key, with its row when it is a row's).
    """
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise RequestError(f"must be a list of rows, got {type(rows).__name__}", field="rows")
    n = len(rows)
    check_row_count(n, max_rows)
    ignored = frozenset(ignored) - set(features)
    common = _check_shared(shared, features, ignored)
    if set(map(type, rows)) != {dict}:
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RequestError(
                    f"must be an object mapping feature names to values, got {type(row).__name__}",
                    field="rows",
                    row=i,
                )
    else:
        same = _same_keys(rows, features, ignored)
        if same is not None:
            return _complete(n, same, {f: 0 for f in same}, features, common)
    return _row_by_row(rows, features, ignored, common)


def _same_keys(
    rows: Sequence[dict[str, object]], features: Sequence[str], ignored: frozenset[str]
) -> dict[str, list[Any]] | None:
    """The feature columns when every row has the first row's keys, all of them features or
    ignored keys (then no key can be unknown); ``None`` otherwise."""
    keys = list(rows[0])
    known = frozenset(features)
    if sum(map(len, rows)) != len(rows) * len(keys) or not all(
        k in known or k in ignored for k in keys
    ):
        return None
    try:  # the rows have as many keys as the first: containing its keys, they have the same
        values = {k: list(map(itemgetter(k), rows)) for k in keys if k in known}
    except KeyError:
        return None
    for k in keys:
        if k not in known and not all(map(contains, rows, repeat(k))):
            return None
    return values


def _complete(
    n: int,
    values: dict[str, list[Any]],
    absent: dict[str, int],
    features: Sequence[str],
    shared: Mapping[str, object],
) -> RowColumns:
    """``RowColumns`` whose features missing from ``values`` are shared (their shared value,
    or ``None`` counted absent in every row)."""
    out: dict[str, Any] = {}
    for f in features:
        if f not in values:
            out[f] = shared.get(f)
            absent[f] = 0 if f in shared else n
    return RowColumns(n, values, absent, out)


def _row_by_row(
    rows: Sequence[Mapping[str, object]],
    features: Sequence[str],
    ignored: frozenset[str],
    shared: Mapping[str, object],
) -> RowColumns:
    n = len(rows)
    values: dict[str, list[Any]] = {}
    absent: dict[str, int] = {}
    present = 0
    for f in features:
        col = [row.get(f, _ABSENT) for row in rows]
        missing = col.count(_ABSENT)
        present += n - missing
        if missing == n:
            continue
        fill = shared.get(f)
        absent[f] = 0 if f in shared else missing
        if missing:
            col = [fill if v is _ABSENT else v for v in col]
        values[f] = col
    present += sum(sum(map(contains, rows, repeat(k))) for k in ignored)
    if sum(map(len, rows)) != present:
        allowed = {*features, *ignored}
        for i, row in enumerate(rows):
            extra = [k for k in row if k not in allowed]
            if extra:
                raise RequestError(
                    f"unknown feature {extra[0]!r}; the model reads {sorted(features)}",
                    field=str(extra[0]),
                    row=i,
                )
    return _complete(n, values, absent, features, shared)


def _type_name(value: object) -> str:
    return type(value).__name__


def _first(col: Sequence[Any], bad: Callable[[Any], bool]) -> int:
    return next(i for i, v in enumerate(col) if bad(v))


def _never(t: type) -> bool:
    return False


def _value_types(
    col: list[Any],
    fast: frozenset[type],
    accept: Callable[[type], bool],
    expected: str,
    feature: str,
) -> set[type]:
    """The set of value types of ``col``; a type neither in ``fast`` nor accepted raises a
    :class:`RequestError` at its first value (``expected`` says what was wanted)."""
    types = set(map(type, col))
    for t in types - fast:
        if not accept(t):
            i = _first(col, lambda v, t=t: type(v) is t)
            raise RequestError(
                f"expected {expected}, got {_type_name(col[i])} {col[i]!r:.60}",
                field=feature,
                row=i,
            )
    return types


def _is_integer_type(t: type) -> bool:
    return issubclass(t, (int, np.integer)) and not issubclass(t, (bool, np.bool_))


def _is_number_type(t: type) -> bool:
    return _is_integer_type(t) or (issubclass(t, (float, np.floating)) and t is not np.bool_)


def _is_categorical_type(t: type) -> bool:
    return _is_integer_type(t) or issubclass(t, str)


def categorical_column(col: list[Any], feature: str) -> list[str | None]:
    """Values of one categorical feature as ``str`` or ``None`` (integers -> decimal strings).

    Raises:
        RequestError: a boolean, float, list, mapping or other non-categorical value (names the
            row and ``feature``).
    """
    types = _value_types(
        col, _CATEGORICAL_FAST, _is_categorical_type, "a string, an integer or null", feature
    )
    if types <= _CATEGORICAL_FAST:
        return col
    if types == {int}:
        return list(map(str, col))
    return [v if v is None or isinstance(v, str) else str(int(v)) for v in col]


def dense_column(col: list[Any], feature: str) -> np.ndarray:
    """Values of one dense feature as a ``B`` float64 array (``None`` -> NaN).

    Raises:
        RequestError: a string, boolean, list or other non-number (names the row and
            ``feature``), or an integer too large for a float.
    """
    _value_types(col, _DENSE_FAST, _is_number_type, "a number or null", feature)
    try:
        return np.array(col, dtype=np.float64)
    except OverflowError:
        i = _first(col, lambda v: isinstance(v, int) and abs(v) > _FLOAT_MAX)
        raise RequestError("integer too large for a float", field=feature, row=i) from None


def _split(text: str, separator: str) -> list[str]:
    return [t for t in text.split(separator) if t]


def multi_column(
    col: list[Any], feature: str, separator: str | None
) -> tuple[np.ndarray, list[str | None]]:
    """One multi-hot feature: per-row ``lengths`` (``B`` int32) and the flat values.

    A row is a list or tuple of categorical values (a ``None`` element is a missing value), or
    ``None`` (an empty list), or, when ``separator`` is set, one string split on it with empty
    tokens dropped (as the raw reader does: ``"a|b||c"`` -> ``["a", "b", "c"]``, ``""`` ->
    ``[]``).

    Raises:
        RequestError: a row of another type (a string when the feature has no separator), or
            an element that is not categorical (names the row and ``feature``).
    """
    allowed = frozenset({list, tuple, _NONE} | ({str} if separator else set()))
    text = f" or one {separator!r}-separated string" if separator else ""
    types = _value_types(col, allowed, _never, f"a list of values{text} or null", feature)
    if str in types:
        assert separator is not None
        col = [_split(v, separator) if type(v) is str else v for v in col]
    if _NONE in types:
        col = [() if v is None else v for v in col]
    lengths = np.fromiter(map(len, col), dtype=np.int32, count=len(col))
    flat: list[Any] = list(chain.from_iterable(col))
    try:
        return lengths, categorical_column(flat, feature)
    except RequestError as err:
        assert err.row is not None
        row = int(np.searchsorted(np.cumsum(lengths), err.row, side="right"))
        raise RequestError(f"list element: {err.reason}", field=feature, row=row) from None


class RequestCounters:
    """Thread-safe counts of requests, rows and per-feature events (``absent``, ``unseen``,
    ``dropped`` ...), for ``/metrics``.

    Example::

        counters.record(rows=3, events={"absent": {"topic": 1}})
        counters.snapshot()   # {'requests': 1, 'rows': 3, 'absent': {'topic': 1}}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._rows = 0
        self._events: dict[str, dict[str, int]] = {}

    def record(self, rows: int, events: Mapping[str, Mapping[str, int]]) -> None:
        """Adds one request of ``rows`` rows and its ``{kind: {feature: count}}`` events."""
        with self._lock:
            self._requests += 1
            self._rows += rows
            for kind, counts in events.items():
                target = self._events.setdefault(kind, {})
                for feature, count in counts.items():
                    if count:
                        target[feature] = target.get(feature, 0) + int(count)

    def snapshot(self) -> dict[str, Any]:
        """``{"requests": n, "rows": n, <kind>: {feature: n}}`` (a copy)."""
        with self._lock:
            out: dict[str, Any] = {"requests": self._requests, "rows": self._rows}
            out.update({kind: dict(counts) for kind, counts in self._events.items()})
            return out
