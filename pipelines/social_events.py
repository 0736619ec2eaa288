"""The social backend's event log exported to Parquet for the rankers.

    python -m pipelines.social_events [backend overrides] out_dir=DIR [long_dwell_ms=5000]
        [attribution_window_s=3600] [after_seq=0] [rows_per_file=1000000] [max_lateness_s=300]

Backend overrides are those of ``recsys backend`` (Hydra, on ``configs/social.yaml``):
``backend=production``, ``backend.data_dir=...``. Train on the export with::

    recsys train experiment=multitask_social data=social_events data.path=DIR
    # the tiny experiment sizes the synthetic generator (data.source.config): drop that
    recsys train experiment=multitask_social_tiny data=social_events data.path=DIR \\
        '~data.source.config'

One output row per impression ``(user, post, ts)`` in the schema of the synthetic social data
set (:data:`recsys.data.synthetic.schema.SOCIAL_SCHEMA` without the truth columns ``p_*``, which
only a generator knows), with the dtypes its source yields:

* labels (Float32 0/1): ``like comment share save`` - the user did it on that post at most
  ``attribution_window_s`` after the impression, each action credited to the user's latest
  earlier impression of the post only (a post seen twice, then liked, is one positive, not two);
  ``long_dwell`` - the impression's ``dwell_ms >= long_dwell_ms``.
* dense (Float64): ``post_age_hours`` at the impression, ``author_followers_log``
  (``log1p`` of the author's follower count), ``user_follow_count_log`` (``log1p`` of how many
  the user follows), ``post_length`` (caption characters).
* sparse (Utf8, null where unknown): ``user_id post_id author_id topic media_type country
  age_bucket``, ``user_activity`` (``low``/``medium``/``high``: the user's impression count in the
  export at most the median of all exported users' counts, at most the 85th percentile, or above,
  the synthetic generator's 50/35/15 split) and ``is_following`` (``"0"``/``"1"``).
* ``timestamp`` (Int64 unix seconds, the impression's time floored).

The backend keeps the current follow graph and profile only, not their history, so follower and
followee counts and ``is_following`` are as of the export, not as of each impression (the
synthetic generator's are point in time). Everything else is point in time.

Rows are in ``(ts, seq)`` order. The log is read twice, in batches (pass 1 counts impressions per
user for ``user_activity`` and fixes the last ``seq``, so a log that grows meanwhile still
exports one consistent range); memory holds the impressions of one attribution window, the
per-user counts and caches of the posts, users and follow sets met.

Output (replaced as a whole: written into a hidden sibling folder, then renamed into place):
``out_dir/part-00000.parquet ...`` and ``out_dir/_manifest.json`` (schema, counts, label rates,
time and seq range, source, parameters). The export is a function of the log and the backend's
state: exporting again unchanged gives byte-identical files.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data.synthetic.schema import ACTIVITY_LEVELS, SOCIAL_SCHEMA
from serving.social.domain import InteractionEvent, Post, User
from serving.social.storage.interfaces import MetadataStore, MetadataTx

FORMAT = "social_events/v1"
MANIFEST = "_manifest.json"
PART_PATTERN = "part-{:05d}.parquet"
# The synthetic generator draws long_dwell as a label (base rate 0.2) without a time threshold;
# 5 s is a common "the user stopped to read it" cut. Tune it to the app's dwell distribution.
DEFAULT_LONG_DWELL_MS = 5_000
DEFAULT_ATTRIBUTION_WINDOW_S = 3_600.0
DEFAULT_MAX_LATENESS_S = 300.0
DEFAULT_ROWS_PER_FILE = 1_000_000
DEFAULT_READ_BATCH = 10_000
ACTIONS = ("like", "comment", "share", "save")
ACTIVITY_QUANTILES = (0.5, 0.85)

LABELS = SOCIAL_SCHEMA.labels
SCHEMA: dict[str, pl.DataType] = {
    **{c: pl.Float32() for c in SOCIAL_SCHEMA.labels},
    **{c: pl.Float64() for c in SOCIAL_SCHEMA.dense},
    **{c: pl.Utf8() for c in SOCIAL_SCHEMA.sparse},
    str(SOCIAL_SCHEMA.timestamp): pl.Int64(),
}
"""Output columns in order and their dtypes (those of :class:`recsys.data.synthetic.SocialSource`
less the aux truth columns)."""


class ExportError(ValueError):
    """The export cannot run as asked (bad ``out_dir``, bad parameters); says what to change."""


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


class _Impression:
    """One impression waiting for its attribution window to close."""

    __slots__ = ("author", "dwell_ms", "key", "labels", "post", "seq", "ts", "user")

    def __init__(self, event: InteractionEvent, seq: int) -> None:
        self.ts = float(event.ts)
        self.seq = seq
        self.user = int(event.user_id)
        self.post = int(event.post_id)
        self.author = int(event.author_id)
        self.dwell_ms = event.dwell_ms
        self.labels: set[str] = set()
        self.key = (self.ts, seq)


class _Lookups:
    """Caches of what the metadata store knows about the users, posts and authors met."""

    def __init__(self) -> None:
        self.posts: dict[int, Post | None] = {}
        self.users: dict[int, User | None] = {}
        self.followers: dict[int, int] = {}
        self.followees: dict[int, frozenset[int]] = {}
        self.missing_posts = 0

    def load(self, tx: MetadataTx, rows: Sequence[_Impression]) -> None:
        posts = sorted({r.post for r in rows} - self.posts.keys())
        if posts:
            found = tx.get_posts(posts)
            for pid in posts:
                post = found.get(pid) or tx.get_post(pid, include_deleted=True)
                self.missing_posts += post is None
                self.posts[pid] = post
        users = sorted({r.user for r in rows} - self.users.keys())
        if users:
            found_users = tx.get_users(users)
            for uid in users:
                self.users[uid] = found_users.get(uid)
                self.followees[uid] = frozenset(tx.followees(uid))
        authors = sorted({r.author for r in rows} - self.followers.keys())
        if authors:
            self.followers.update(tx.follower_counts(authors))


def _activity_thresholds(counts: Mapping[int, int]) -> tuple[float, float] | None:
    if not counts:
        return None
    q = np.quantile(np.fromiter(counts.values(), dtype=np.float64), ACTIVITY_QUANTILES)
    return float(q[0]), float(q[1])


def _activity(count: int, thresholds: tuple[float, float] | None) -> str | None:
    if thresholds is None:
        return None
    return ACTIVITY_LEVELS[int(np.searchsorted(np.asarray(thresholds), count, side="left"))]


def _text(value: str | None) -> str | None:
    return value if value else None


def _frame(
    rows: Sequence[_Impression],
    lookups: _Lookups,
    activity: Mapping[int, str | None],
    long_dwell_ms: int,
) -> pl.DataFrame:
    """The output rows for ``rows`` (features from the caches, which must hold them)."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA}
    for r in rows:
        post, user = lookups.posts[r.post], lookups.users[r.user]
        for task in ACTIONS:
            cols[task].append(1.0 if task in r.labels else 0.0)
        dwell = r.dwell_ms if r.dwell_ms is not None else 0
        cols["long_dwell"].append(1.0 if dwell >= long_dwell_ms else 0.0)
        cols["post_age_hours"].append(
            (r.ts - post.created_at) / 3600.0 if post is not None else None
        )
        cols["author_followers_log"].append(math.log1p(lookups.followers.get(r.author, 0)))
        followees = lookups.followees[r.user]
        cols["user_follow_count_log"].append(math.log1p(len(followees)))
        cols["post_length"].append(float(len(post.caption)) if post is not None else None)
        cols["user_id"].append(str(r.user))
        cols["post_id"].append(str(r.post))
        cols["author_id"].append(str(r.author))
        cols["topic"].append(_text(post.topic) if post is not None else None)
        cols["media_type"].append(_text(post.media_type) if post is not None else None)
        cols["country"].append(_text(user.country) if user is not None else None)
        cols["age_bucket"].append(_text(user.age_bucket) if user is not None else None)
        cols["user_activity"].append(activity.get(r.user))
        cols["is_following"].append("1" if r.author in followees else "0")
        cols["timestamp"].append(math.floor(r.ts))
    return pl.DataFrame(cols, schema=SCHEMA)


def _check_out_dir(out: Path) -> None:
    """Raises unless ``out`` is absent, an empty folder, or a previous export (replaceable)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"out_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        manifest = out / MANIFEST
        try:
            previous = json.loads(manifest.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or previous.get("format") != FORMAT:
            raise ExportError(
                f"out_dir {out} is not empty and holds no previous export ({MANIFEST} with "
                f"format {FORMAT!r}); refusing to replace it: pass a new or empty folder"
            )


def _replace_dir(staging: Path, out: Path) -> None:
    """Moves ``staging`` to ``out``, replacing a previous export there (two renames)."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


class _PartWriter:
    """Cuts the stream of output frames into parts of ``rows_per_file`` rows."""

    def __init__(self, folder: Path, rows_per_file: int) -> None:
        self.folder = folder
        self.rows_per_file = rows_per_file
        self.pending: list[pl.DataFrame] = []
        self.n_pending = 0
        self.files: list[str] = []
        self.rows_per_part: list[int] = []
        self.label_sums = dict.fromkeys(LABELS, 0.0)
        self.rows = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def add(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        self.pending.append(frame)
        self.n_pending += frame.height
        while self.n_pending >= self.rows_per_file:
            merged = pl.concat(self.pending)
            self._write(merged.head(self.rows_per_file))
            rest = merged.slice(self.rows_per_file)
            self.pending, self.n_pending = ([rest] if rest.height else []), rest.height

    def close(self) -> None:
        if self.n_pending or not self.files:
            merged = pl.concat(self.pending) if self.pending else pl.DataFrame(schema=SCHEMA)
            self._write(merged)
        self.pending, self.n_pending = [], 0

    def _write(self, frame: pl.DataFrame) -> None:
        name = PART_PATTERN.format(len(self.files))
        frame.write_parquet(self.folder / name)
        self.files.append(name)
        self.rows_per_part.append(frame.height)
        self.rows += frame.height
        if frame.height:
            for label in LABELS:
                self.label_sums[label] += float(frame[label].sum())
            lo, hi = int(frame["timestamp"].min()), int(frame["timestamp"].max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)


def _count_pass(
    metadata: MetadataStore, after_seq: int, batch: int
) -> tuple[Counter[int], int, Counter[str]]:
    """Pass 1: impressions per user, the last seq, and events per kind."""
    per_user: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    last_seq = after_seq
    for events in metadata.iter_events(after_seq=after_seq, batch=batch):
        for e in events:
            kinds[e.kind] += 1
            if e.kind == "impression":
                per_user[int(e.user_id)] += 1
        if events:
            last_seq = max(last_seq, _seq(events[-1], last_seq))
    return per_user, last_seq, kinds


def _seq(event: InteractionEvent, fallback: int) -> int:
    return int(event.seq) if event.seq is not None else fallback


def _events_upto(
    metadata: MetadataStore, after_seq: int, last_seq: int, batch: int
) -> Iterator[list[InteractionEvent]]:
    """The log's batches with ``after_seq < seq <= last_seq``."""
    if last_seq <= after_seq:
        return
    for events in metadata.iter_events(after_seq=after_seq, batch=batch):
        kept = [e for e in events if e.seq is None or e.seq <= last_seq]
        if kept:
            yield kept
        if len(kept) < len(events) or (events and _seq(events[-1], 0) >= last_seq):
            return


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

    Returns:
        What was written (also in ``_manifest.json``).

    Raises:
        ExportError: a bad ``out_dir`` or parameter.
    """
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
    out = Path(out_dir).expanduser().resolve()
    _check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source_info = dict(source) if source is not None else {"store": type(metadata).__name__}

    per_user, last_seq, kinds = _count_pass(metadata, after_seq, read_batch)
    thresholds = _activity_thresholds(per_user)
    activity = {u: _activity(c, thresholds) for u, c in per_user.items()}

    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        writer = _PartWriter(staging, rows_per_file)
        stats = _attribute(
            metadata,
            writer,
            activity,
            after_seq=after_seq,
            last_seq=last_seq,
            read_batch=read_batch,
            window=float(attribution_window_s),
            lateness=float(max_lateness_s),
            long_dwell_ms=long_dwell_ms,
        )
        writer.close()
        summary = ExportSummary(
            out_dir=out,
            rows=writer.rows,
            files=tuple(writer.files),
            label_rates=(
                {k: v / writer.rows for k, v in writer.label_sums.items()} if writer.rows else {}
            ),
            time_range=(
                (writer.first_ts, writer.last_ts)
                if writer.first_ts is not None and writer.last_ts is not None
                else None
            ),
            after_seq=after_seq,
            last_seq=last_seq,
            events=dict(sorted(kinds.items())),
            unattributed_actions=stats["unattributed_actions"],
            immature_rows=stats["immature_rows"],
            out_of_order_rows=stats["out_of_order_rows"],
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
            "files": [{"name": n, "rows": r} for n, r in zip(writer.files, writer.rows_per_part)],
            "source": source_info,
            "parameters": {
                "long_dwell_ms": long_dwell_ms,
                "attribution_window_s": float(attribution_window_s),
                "max_lateness_s": float(max_lateness_s),
                "after_seq": after_seq,
                "rows_per_file": rows_per_file,
            },
            "missing_posts": stats["missing_posts"],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _attribute(
    metadata: MetadataStore,
    writer: _PartWriter,
    activity: Mapping[int, str | None],
    *,
    after_seq: int,
    last_seq: int,
    read_batch: int,
    window: float,
    lateness: float,
    long_dwell_ms: int,
) -> dict[str, int]:
    """Pass 2: credits actions to impressions and writes impressions whose window closed."""
    heap: list[tuple[tuple[float, int], _Impression]] = []
    by_pair: dict[tuple[int, int], list[_Impression]] = {}
    lookups = _Lookups()
    stats = dict.fromkeys(
        ("unattributed_actions", "immature_rows", "out_of_order_rows", "missing_posts"), 0
    )
    watermark = -math.inf
    last_written: tuple[float, int] | None = None

    def flush(until: float) -> None:
        nonlocal last_written
        ready: list[_Impression] = []
        while heap and heap[0][0][0] <= until:
            _, imp = heapq.heappop(heap)
            pair = by_pair[(imp.user, imp.post)]
            pair.remove(imp)
            if not pair:
                del by_pair[(imp.user, imp.post)]
            if last_written is not None and imp.key < last_written:
                stats["out_of_order_rows"] += 1
            else:
                last_written = imp.key
            ready.append(imp)
        if ready:
            with metadata.transaction() as tx:
                lookups.load(tx, ready)
            writer.add(_frame(ready, lookups, activity, long_dwell_ms))

    fallback_seq = after_seq
    for events in _events_upto(metadata, after_seq, last_seq, read_batch):
        for e in events:
            seq = fallback_seq = _seq(e, fallback_seq + 1)
            ts = float(e.ts)
            watermark = max(watermark, ts)
            pair_key = (int(e.user_id), int(e.post_id))
            if e.kind == "impression":
                imp = _Impression(e, seq)
                heapq.heappush(heap, (imp.key, imp))
                pair = by_pair.setdefault(pair_key, [])
                pair.append(imp)
                if len(pair) > 1 and pair[-2].key > imp.key:
                    pair.sort(key=lambda i: i.key)
            elif e.kind in ACTIONS:
                credited = None
                for imp in reversed(by_pair.get(pair_key, ())):
                    if imp.ts <= ts:
                        credited = imp
                        break
                if credited is not None and ts - credited.ts <= window:
                    credited.labels.add(e.kind)
                else:
                    stats["unattributed_actions"] += 1
        flush(watermark - window - lateness)
    stats["immature_rows"] = sum(1 for _, imp in heap if imp.ts + window > watermark)
    flush(math.inf)
    stats["missing_posts"] = lookups.missing_posts
    return stats


# --- the job ------------------------------------------------------------------------------------

_OPTIONS: dict[str, type] = {
    "out_dir": str,
    "long_dwell_ms": int,
    "attribution_window_s": float,
    "after_seq": int,
    "rows_per_file": int,
    "max_lateness_s": float,
}
USAGE = "\n\n".join(__doc__.split("\n\n")[1:4])


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Splits ``key=value`` arguments into export options and backend (Hydra) overrides."""
    options: dict[str, Any] = {}
    overrides: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in _OPTIONS:
            try:
                options[key] = _OPTIONS[key](value)
            except ValueError:
                raise SystemExit(
                    f"pipelines.social_events: {key} must be {_OPTIONS[key].__name__}, "
                    f"got {value!r}"
                ) from None
        else:
            overrides.append(arg)
    if not options.get("out_dir"):
        raise SystemExit(f"pipelines.social_events: out_dir=DIR is required\n{USAGE}")
    return options, overrides


def open_metadata(settings: Any) -> tuple[MetadataStore, dict[str, Any]]:
    """The metadata store of ``settings`` (a :class:`serving.social.settings.BackendSettings`)
    opened read-only in spirit: no migration, no Redis; and facts about it for the manifest.

    Raises ``SystemExit`` when the embedded database does not exist or the store is unreachable
    or behind the latest schema revision.
    """
    from serving.social.storage.factory import metadata_url
    from serving.social.storage.sql import SqlMetadataStore

    facts: dict[str, Any] = {"backend": "serving.social", "storage": settings.storage}
    if settings.storage == "embedded":
        path = Path(settings.resolved_sqlite_path()).expanduser().resolve()
        if not path.is_file():
            raise SystemExit(
                f"pipelines.social_events: no embedded backend database at {path} "
                "(set backend.data_dir or backend.sqlite_path)"
            )
        facts["sqlite_path"] = str(path)
    store = SqlMetadataStore.from_url(metadata_url(settings), run_migrations=False)
    try:
        store.check()
    except Exception as error:
        store.close()
        raise SystemExit(f"pipelines.social_events: {error}") from None
    return store, facts


def main(argv: Sequence[str] | None = None) -> ExportSummary | None:
    """``python -m pipelines.social_events [backend overrides] out_dir=DIR [options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return None
    options, overrides = parse_args(args)
    from serving.social.cli import load_settings

    settings, _ = load_settings(overrides)
    store, facts = open_metadata(settings)
    try:
        summary = export_events(store, options.pop("out_dir"), source=facts, **options)
    except ExportError as error:
        raise SystemExit(f"pipelines.social_events: {error}") from None
    finally:
        store.close()
    print("\n".join(summary.lines()), flush=True)
    return summary


if __name__ == "__main__":
    main()
