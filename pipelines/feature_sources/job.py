"""Writing a feature data folder: ``sources/*.parquet`` (the feature views' offline data),
``labels.parquet`` (the training label table), and optionally applying the definitions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys.features.tables import EventTables, build_sources, write_sources


@dataclass(frozen=True)
class FeatureData:
    """What :func:`write_feature_data` wrote."""

    data_dir: Path
    sources: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    applied: bool = False

    def lines(self) -> list[str]:
        """The human summary the job prints."""
        rows = "  ".join(f"{k} {v}" for k, v in self.sources.items())
        return [
            f"feature_sources: {self.labels} labels -> {self.data_dir / 'labels.parquet'}",
            f"sources ({self.data_dir / 'sources'}): {rows}",
            f"applied: {self.applied}",
        ]


def write_feature_data(
    tables: EventTables, labels: pl.DataFrame, data_dir: str | Path, *, apply: bool = True
) -> FeatureData:
    """Builds and writes the sources and the label table into ``data_dir``; with ``apply``,
    registers the definitions in the store there (``registry.db``; the SQLite online store
    stays empty until materialized)."""
    root = Path(data_dir).expanduser().resolve()
    frames = build_sources(tables)
    write_sources(frames, root / "sources")
    tmp = root / ".labels.parquet.tmp"
    labels.write_parquet(tmp)
    os.replace(tmp, root / "labels.parquet")
    if apply:
        from recsys.features.store import StoreSettings, open_store

        open_store(StoreSettings(root))
    return FeatureData(
        data_dir=root,
        sources={k: v.height for k, v in frames.items()},
        labels=labels.height,
        applied=apply,
    )
