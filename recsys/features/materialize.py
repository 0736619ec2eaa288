"""Materialization that fails loudly and resumes: the online store is loaded view by view,
each view's window recorded before and after it is written.

``<data>/materialize_state.<online>.json`` holds per view ``complete_to`` (the end of the last
window written in full) and ``pending`` (a window being written, left there by a failure). A
failed view raises :class:`MaterializationError` naming it and its window, and the state says
so (:func:`pending_views`, :func:`check_complete`); the next :func:`materialize` starts every
view at its own ``complete_to`` and writes the failed window again. Writing a window again is
safe: the online store keeps one row per entity, the entity's latest in the window, so the
rows written before the failure are overwritten with the same or newer values, and the online
store ends where a run without the failure would have left it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.features.store import FeatureStoreError

if TYPE_CHECKING:
    from feast import FeatureStore


class MaterializationError(RuntimeError):
    """A view failed to materialize; the message names it, its window and how to resume."""

    def __init__(self, view: str, start: datetime, end: datetime, cause: BaseException) -> None:
        super().__init__(
            f"materializing view {view!r} over [{start.isoformat()}, {end.isoformat()}] failed "
            f"({type(cause).__name__}: {cause}); its online rows may be partly updated: run "
            "materialize again to resume (views already complete are not rewritten)"
        )
        self.view = view
        self.start = start
        self.end = end


@dataclass
class MaterializeReport:
    """What :func:`materialize` wrote: ``view -> (start, end)``; views already at ``end``
    are in ``up_to_date``."""

    written: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    up_to_date: list[str] = field(default_factory=list)


def state_path(store: FeatureStore) -> Path:
    """The state file of the store's online store (one per online store kind)."""
    kind = str(store.config.online_store.type)
    return Path(store.config.repo_path) / f"materialize_state.{kind}.json"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise FeatureStoreError(
            f"unreadable materialization state: {error}", path=str(path)
        ) from None
    if not isinstance(data, dict):
        raise FeatureStoreError("materialization state is not a JSON object", path=str(path))
    return data


def _save(path: Path, state: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def pending_views(store: FeatureStore) -> dict[str, tuple[datetime, datetime]]:
    """Views whose last materialization failed midway: ``view -> (start, end)``."""
    out = {}
    for view, entry in _load(state_path(store)).items():
        window = entry.get("pending")
        if window:
            out[view] = (datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1]))
    return out


def check_complete(store: FeatureStore) -> None:
    """Raises :class:`FeatureStoreError` when a view's online rows are partly written."""
    pending = pending_views(store)
    if pending:
        views = ", ".join(
            f"{v} [{a.isoformat()}, {b.isoformat()}]" for v, (a, b) in pending.items()
        )
        raise FeatureStoreError(
            f"the online store is partly materialized (failed: {views}); run materialize again"
        )


def materialize(
    store: FeatureStore,
    end: datetime,
    *,
    start: datetime | None = None,
    views: Sequence[str] | None = None,
) -> MaterializeReport:
    """Loads the online store up to ``end``, view by view, each from its own ``complete_to``
    (or ``start`` for a view never materialized; an error if neither is known).

    Raises:
        MaterializationError: a view failed (earlier views stay complete; rerun to resume).
        FeatureStoreError: an unknown view, or no ``start`` for a new view, or ``start`` after
            ``end``.
    """
    end = _utc(end)
    known = [v.name for v in store.list_feature_views(allow_cache=False)]
    chosen = list(views) if views is not None else known
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise FeatureStoreError(f"unknown feature views {unknown}; known: {known}", field="views")
    path = state_path(store)
    state = _load(path)
    report = MaterializeReport()
    for view in chosen:
        entry = state.setdefault(view, {})
        done = entry.get("complete_to")
        begin = datetime.fromisoformat(done) if done else (_utc(start) if start else None)
        if begin is None:
            raise FeatureStoreError(
                f"view {view!r} was never materialized: pass start (the first load needs a "
                "window; materialize-incremental would start at now minus the TTL)",
                field="start",
            )
        if pending := entry.get("pending"):
            begin = min(begin, datetime.fromisoformat(pending[0]))
        if begin >= end:
            report.up_to_date.append(view)
            continue
        entry["pending"] = [begin.isoformat(), end.isoformat()]
        _save(path, state)
        try:
            store.materialize(begin, end, feature_views=[view])
        except Exception as error:
            raise MaterializationError(view, begin, end, error) from error
        entry["pending"] = None
        entry["complete_to"] = end.isoformat()
        _save(path, state)
        report.written[view] = (begin, end)
    return report
