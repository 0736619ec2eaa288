"""The one error type of a bad inference request.

A :class:`RequestError` names what is wrong and where: the request field (a raw feature name, an
ONNX input name, ``rows``, ``user_id``, ``k`` ...) and, for per-row problems, the row index.
The HTTP layer turns it into a 422 whose body carries ``field`` and ``row``.

Example::

    try:
        ranker.score(rows)
    except RequestError as err:
        print(err.field, err.row, err)      # 'topic' 3 "row 3, feature 'topic': ..."
"""

from __future__ import annotations

__all__ = ["RequestError"]


class RequestError(ValueError):
    """A request the model cannot answer; nothing was run and no state changed.

    Attributes:
        field: the request field at fault (a feature, an input name, ``rows``, ``k`` ...).
        row: the 0-based row (candidate) index, ``None`` when the problem is not per row.
    """

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"feature {field!r}" if row is not None else f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.field = field
        self.row = row
        self.reason = message
