"""The export job itself: checks the request, runs the two attribution passes over the log into
the part writer and writes the manifest (:func:`export_events`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.social_events.attribution import (
    LABELS,
    SCHEMA,
    Lookups,
    activity_level,
    activity_thresholds,
    attribute,
    count_pass,
)
from pipelines.social_events.history import write_history
from pipelines.social_events.writer import (
    FORMAT,
    MANIFEST,
    ExportError,
    PartWriter,
    check_out_dir,
    staged_dir,
    write_manifest,
)
from recsys.data.synthetic.schema import SOCIAL_SCHEMA
from serving.social.storage.interfaces import MetadataStore

# The synthetic generator draws long_dwell as a label (base rate 0.2) without a time threshold;
# 5 s is a common "the user stopped to read it" cut. Tune it to the app's dwell distribution.
DEFAULT_LONG_DWELL_MS = 5_000
DEFAULT_ATTRIBUTION_WINDOW_S = 3_600.0
DEFAULT_MAX_LATENESS_S = 300.0
DEFAULT_ROWS_PER_FILE = 1_000_000
DEFAULT_READ_BATCH = 10_000


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_events` wrote.

    Attributes:
        out_dir: the export folder.
        rows: impression rows written.
        files: part file names in order.
        label_rates: mean of each label over the rows (empty when there are none).
        time_range: ``(first, last)`` row timestamp, or None without rows.
        after_seq: events with ``seq > after_seq`` were read ...
        last_seq: ... up to this one (``after_seq`` when there were none).
        events: events read per kind.
        unattributed_actions: likes, comments, shares and saves with no impression of the post
            by the user in the attribution window before them (these are not rows).
        immature_rows: rows whose attribution window runs past the last event read: their
            action labels may still turn positive in a later export.
        out_of_order_rows: rows whose impression was logged more than the allowed lateness after
            a later impression was written (written anyway, just after it).
        activity_thresholds: the impression counts splitting low / medium / high activity.
        source: the backend the log came from.
    """

    out_dir: Path
    rows: int
    files: tuple[str, ...]
    label_rates: dict[str, float]
    time_range: tuple[int, int] | None
    after_seq: int
    last_seq: int
    events: dict[str, int] = field(default_factory=dict)
    unattributed_actions: int = 0
    immature_rows: int = 0
    out_of_order_rows: int = 0
    activity_thresholds: tuple[float, float] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the manifest's ``summary``)."""
        return {
            "rows": self.rows,
            "files": list(self.files),
            "label_rates": dict(self.label_rates),
            "time_range": list(self.time_range) if self.time_range else None,
            "after_seq": self.after_seq,
            "last_seq": self.last_seq,
            "events": dict(self.events),
            "unattributed_actions": self.unattributed_actions,
            "immature_rows": self.immature_rows,
            "out_of_order_rows": self.out_of_order_rows,
            "activity_thresholds": (
                list(self.activity_thresholds) if self.activity_thresholds else None
            ),
        }

    def lines(self) -> list[str]:
        """The human summary the job prints."""
        rates = "  ".join(f"{k} {v:.4f}" for k, v in self.label_rates.items()) or "-"
        span = f"{self.time_range[0]}..{self.time_range[1]}" if self.time_range else "-"
        return [
            f"social_events: {self.rows} rows in {len(self.files)} file(s) -> {self.out_dir}",
            f"label rates: {rates}",
            f"time range: {span}  seq range: ({self.after_seq}, {self.last_seq}]",
            f"events: {dict(sorted(self.events.items()))}  unattributed actions: "
            f"{self.unattributed_actions}  immature rows: {self.immature_rows}  "
            f"out-of-order rows: {self.out_of_order_rows}",
            f"manifest: {self.out_dir / MANIFEST}",
        ]


def _check_parameters(
    long_dwell_ms: int,
    attribution_window_s: float,
    max_lateness_s: float,
    after_seq: int,
    rows_per_file: int,
    read_batch: int,
) -> None:
    if long_dwell_ms < 0:
        raise ExportError(f"long_dwell_ms must be >= 0, got {long_dwell_ms}")
    if not attribution_window_s > 0:
        raise ExportError(f"attribution_window_s must be > 0, got {attribution_window_s}")
    if max_lateness_s < 0:
        raise ExportError(f"max_lateness_s must be >= 0, got {max_lateness_s}")
    if after_seq < 0:
        raise ExportError(f"after_seq must be >= 0, got {after_seq}")
    if rows_per_file < 1 or read_batch < 1:
        raise ExportError("rows_per_file and read_batch must be >= 1")


def export_events(
    metadata: MetadataStore,
    out_dir: str | Path,
    *,
    long_dwell_ms: int = DEFAULT_LONG_DWELL_MS,
    attribution_window_s: float = DEFAULT_ATTRIBUTION_WINDOW_S,
    after_seq: int = 0,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    max_lateness_s: float = DEFAULT_MAX_LATENESS_S,
    read_batch: int = DEFAULT_READ_BATCH,
    source: Mapping[str, Any] | None = None,
    history: bool = False,
) -> ExportSummary:
    """Exports the impressions logged after ``after_seq`` to Parquet in ``out_dir``.

    Args:
        metadata: the backend's metadata store (event log, posts, users, follow graph).
        out_dir: the export folder: absent, empty, or a previous export (replaced as a whole).
        long_dwell_ms: an impression with ``dwell_ms >= long_dwell_ms`` is a long dwell.
        attribution_window_s: an action counts for the user's latest impression of the post
            at most this many seconds before it (at or after the impression's time).
        after_seq: export events with ``seq > after_seq`` (0: the whole log). Actions are
            matched to impressions within the exported range only.
        rows_per_file: rows per part file (the last may have fewer).
        max_lateness_s: how far out of time order (by seq) the log may be; an impression is
            written once an event at least ``attribution_window_s + max_lateness_s`` later
            was read.
        read_batch: events per read from the store.
        source: facts about the backend for the manifest (default: the store's class).
        history: also write the follow log and the rows' posts beside the parts
            (:mod:`pipelines.social_events.history`: ``follows.parquet``, ``posts.parquet``),
            the input of the feature store (the job's default).

    Returns:
        What was written (also in ``_manifest.json``).

    Raises:
        ExportError: a bad ``out_dir`` or parameter.
    """
    _check_parameters(
        long_dwell_ms, attribution_window_s, max_lateness_s, after_seq, rows_per_file, read_batch
    )
    out = Path(out_dir).expanduser().resolve()
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source_info = dict(source) if source is not None else {"store": type(metadata).__name__}

    per_user, last_seq, kinds = count_pass(metadata, after_seq, read_batch)
    thresholds = activity_thresholds(per_user)
    activity = {u: activity_level(c, thresholds) for u, c in per_user.items()}

    lookups = Lookups()
    with staged_dir(out) as staging:
        writer = PartWriter(
            staging,
            rows_per_file,
            SCHEMA,
            sum_columns=LABELS,
            time_column=str(SOCIAL_SCHEMA.timestamp),
        )
        stats = attribute(
            metadata,
            writer.add,
            activity,
            after_seq=after_seq,
            last_seq=last_seq,
            read_batch=read_batch,
            window=float(attribution_window_s),
            lateness=float(max_lateness_s),
            long_dwell_ms=long_dwell_ms,
            lookups=lookups,
        )
        writer.close()
        history_rows = write_history(staging, metadata, lookups, read_batch) if history else {}
        summary = ExportSummary(
            out_dir=out,
            rows=writer.rows,
            files=tuple(writer.files),
            label_rates=writer.means(),
            time_range=writer.time_range(),
            after_seq=after_seq,
            last_seq=last_seq,
            events=dict(sorted(kinds.items())),
            unattributed_actions=stats.unattributed_actions,
            immature_rows=stats.immature_rows,
            out_of_order_rows=stats.out_of_order_rows,
            activity_thresholds=thresholds,
            source=source_info,
        )
        manifest = {
            **summary.to_dict(),
            "format": FORMAT,
            "schema": {name: str(dtype) for name, dtype in SCHEMA.items()},
            "raw_schema": {
                "labels": list(SOCIAL_SCHEMA.labels),
                "dense": list(SOCIAL_SCHEMA.dense),
                "sparse": list(SOCIAL_SCHEMA.sparse),
                "timestamp": SOCIAL_SCHEMA.timestamp,
            },
            "files": writer.parts(),
            "source": source_info,
            "parameters": {
                "long_dwell_ms": long_dwell_ms,
                "attribution_window_s": float(attribution_window_s),
                "max_lateness_s": float(max_lateness_s),
                "after_seq": after_seq,
                "rows_per_file": rows_per_file,
            },
            "missing_posts": stats.missing_posts,
        }
        if history:
            manifest["history"] = history_rows
        write_manifest(staging, manifest)
    return summary
