"""Readers of real data formats, each a :class:`~recsys.data.source.RawSource`.

* :class:`CriteoReader` - the Criteo Display Advertising Challenge TSV.
* :class:`MovieLensReader` - MovieLens 100K, 1M (and 10M) and the "latest"/20M/25M CSVs.
* :class:`CtrTableReader` - any flat CSV/TSV/Parquet table described by config.

``READERS`` maps the short names used in configs to import paths; :func:`reader_class`
imports one lazily::

    cls = reader_class("criteo")
    source = cls("train.txt")
"""

from __future__ import annotations

import importlib

from recsys.data.readers.criteo import CriteoReader
from recsys.data.readers.ctr_table import CtrTableReader
from recsys.data.readers.movielens import MovieLensReader

READERS: dict[str, str] = {
    "criteo": "recsys.data.readers.criteo:CriteoReader",
    "movielens": "recsys.data.readers.movielens:MovieLensReader",
    "ctr_table": "recsys.data.readers.ctr_table:CtrTableReader",
}


def reader_class(kind: str) -> type:
    """The reader class registered under ``kind`` (imported on demand).

    Raises ``KeyError`` listing the known kinds for an unknown one.
    """
    try:
        target = READERS[kind]
    except KeyError:
        raise KeyError(f"unknown reader kind {kind!r}; known kinds: {sorted(READERS)}") from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return vars(module)[attr]


__all__ = ["READERS", "CriteoReader", "CtrTableReader", "MovieLensReader", "reader_class"]
