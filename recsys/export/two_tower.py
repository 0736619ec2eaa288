"""A two-tower run's export folder: both towers, the item vectors, their FAISS index, id maps.

:func:`export_two_tower_run` writes ``user_tower.onnx`` and ``item_tower.onnx`` (per-feature
ids/lengths -> unit vectors), ``item_vectors.npy`` (the catalog through the item tower,
``N x D`` float32, row = item index), the index built from them under ``index/`` (FAISS ids
are item indices), and under ``retrieval/`` what a request needs to become tower inputs:
``users.parquet`` (``index``, raw ``id``, each user side feature's code, ``history``: the
user's last ``history_len`` items as of the export), ``items.parquet`` (``index``, raw ``id``,
side-feature codes, multi-valued codes as lists) and ``vocab/<feature>.parquet`` (``value``,
``code``; code 0 = unseen or missing). Parity: both towers against eager over every user and
item row. ``manifest.json`` is written last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.data.retrieval_data import RetrievalData
from recsys.data.tables import FeatureTable
from recsys.export.folder import ParityError, fresh_export_dir
from recsys.export.graph import SparseInput
from recsys.export.manifest import Manifest, write_manifest
from recsys.export.onnx_export import export_tower
from recsys.export.parity import TOLERANCE, ParityReport, session, tower_parity
from recsys.models.two_tower import TwoTower, encode_items
from recsys.retrieval.index import IndexConfig, VectorIndex

__all__ = ["TowerExport", "export_two_tower_run"]

_DIR = "retrieval"


@dataclass
class TowerExport:
    """What a two-tower export measured: parity per tower and the index it built."""

    parity: dict[str, ParityReport]
    items: int
    users: int
    index: dict[str, Any]


def _bags(table: FeatureTable, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths R, values)`` of one key of a table's KJT."""
    jt = table.sparse.to_dict()[key]
    return jt.lengths().numpy().astype(np.int64), jt.values().numpy().astype(np.int64)


def _list_array(lengths: np.ndarray, values: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int64()))


def _entity_table(
    ids: list[str], table: FeatureTable, keys: list[str], multi: set[str]
) -> pa.Table:
    """One row per entity index: ``index``, raw ``id``, then each key's code (or code list)."""
    columns: dict[str, pa.Array] = {
        "index": pa.array(np.arange(len(ids), dtype=np.int64)),
        "id": pa.array(ids, pa.string()),
    }
    for key in keys:
        lengths, values = _bags(table, key)
        if key in multi:
            columns[key] = _list_array(lengths, values)
        else:
            if not np.all(lengths == 1):
                raise ValueError(f"feature {key!r} is single-valued but has rows without one id")
            columns[key] = pa.array(values)
    return pa.table(columns)


def _write_vocab(data: RetrievalData, export_dir: Path) -> dict[str, str]:
    files = {}
    (export_dir / _DIR / "vocab").mkdir(parents=True, exist_ok=True)
    for feature, vocab in data.vocabularies.items():
        rel = f"{_DIR}/vocab/{feature}.parquet"
        values = vocab.ids
        frame = pl.DataFrame(
            {"value": values, "code": np.arange(1, len(values) + 1, dtype=np.int64)},
            schema={"value": pl.Utf8, "code": pl.Int64},
        )
        frame.write_parquet(export_dir / rel)
        files[feature] = rel
    return files


def export_two_tower_run(
    model: TwoTower,
    data: RetrievalData,
    users: FeatureTable,
    index_config: IndexConfig,
    export_dir: Path,
    *,
    run: Mapping[str, Any],
    separator: str | None = None,
    tolerance: float = TOLERANCE,
    encode_batch_size: int = 4096,
) -> tuple[Manifest, TowerExport]:
    """Writes the export folder of a trained two-tower model (see the module docstring).

    Args:
        model: the trained model (CPU).
        data: its retrieval data (id maps, catalog, vocabularies, spec).
        users: every user's features as of the export (row = user index), e.g.
            ``data.user_table_at(frame, now)``: their histories are stored for requests that
            send only a user id.
        index_config: the ANN index to build over the item vectors.
        export_dir: the folder to (re)write.
        run: the training run's facts.
        separator: the raw separator of multi-valued item features, if any.

    Raises:
        ParityError: a tower's ONNX vectors differ from eager by more than ``tolerance``.
    """
    export_dir = fresh_export_dir(export_dir)
    model = model.eval().to("cpu")
    multi = set(data.multi_features)
    card = data.cardinalities
    user_keys, item_keys = data.user_keys, data.item_keys
    if users.sparse.keys() != user_keys or len(users) != len(data.users):
        raise ValueError(f"users must be a table of every user with keys {user_keys}")

    files, reports = {}, {}
    for name, tower, keys, table in (
        ("user_tower", model.user_tower, user_keys, users),
        ("item_tower", model.item_tower, item_keys, data.catalog),
    ):
        inputs = [SparseInput(k, card[k]) for k in keys]
        path = export_dir / f"{name}.onnx"
        files[name], _ = export_tower(tower, inputs, multi, path)
        split = "users" if name == "user_tower" else "catalog"
        reports[name] = tower_parity(
            tower, session(str(path)), table.sparse, keys, split=split, tolerance=tolerance
        )
        if not reports[name].ok:
            raise ParityError(
                f"{name}.onnx differs from the trained tower by {reports[name].worst:.3g} "
                f"over {reports[name].rows} rows (tolerance {tolerance:g})"
            )

    with torch.no_grad():
        _, vecs = encode_items(model, data.catalog, encode_batch_size)
    vectors = np.ascontiguousarray(vecs.cpu().numpy(), dtype=np.float32)
    np.save(export_dir / "item_vectors.npy", vectors)
    index = VectorIndex.build(vectors, np.arange(len(vectors), dtype=np.int64), index_config)
    index.save(export_dir / "index")

    (export_dir / _DIR).mkdir(parents=True, exist_ok=True)
    pq.write_table(
        _entity_table(data.users.ids, users, user_keys, multi), export_dir / _DIR / "users.parquet"
    )
    pq.write_table(
        _entity_table(data.items.ids, data.catalog, item_keys, multi),
        export_dir / _DIR / "items.parquet",
    )
    spec = data.spec
    preprocessing = {
        "users": f"{_DIR}/users.parquet",
        "items": f"{_DIR}/items.parquet",
        "vocab": _write_vocab(data, export_dir),
        "history_len": spec.history_len,
        "user_features": list(spec.user_features),
        "item_features": list(spec.item_features),
        "item_multi_features": list(spec.item_multi_features),
        "separator": separator,
    }
    index_facts = {
        "dir": "index",
        "file": "index/index.faiss",
        "kind": index.kind,
        "metric": "inner_product",
        "dim": int(vectors.shape[1]),
        "config": index_config.to_dict(),
        "ids": "item indices (rows of retrieval/items.parquet)",
    }
    manifest = Manifest(
        kind="two_tower",
        model={"class": type(model).__name__, "experiment": run.get("experiment")},
        models=files,
        feature_spec={
            "user": user_keys,
            "item": item_keys,
            "cardinalities": dict(card),
            "multi": sorted(multi),
        },
        preprocessing=preprocessing,
        run=dict(run),
        retrieval={
            "item_vectors": "item_vectors.npy",
            "index": index_facts,
            "num_items": len(vectors),
            "num_users": len(data.users),
        },
        parity={k: r.to_dict() for k, r in reports.items()},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_manifest(export_dir, manifest)
    return manifest, TowerExport(reports, len(vectors), len(data.users), index_facts)
