"""``FaissRetriever`` (user tower -> FAISS -> candidate ids) and ``Recommender`` (retrieve ->
rank -> value), on a two-tower export and a ranker export, with no torch at request time.

:class:`FaissRetriever` loads the two-tower export (``load_manifest``: hashes of both towers
checked), opens ``user_tower.onnx`` and ``item_tower.onnx`` (signatures checked against the
manifest), reads the FAISS index (``manifest.retrieval["index"]``, its search parameters
re-applied; FAISS ids are item indices) and the user and item tables
(:class:`~serving.inference.retrieval_inputs.TwoTowerInputs`).
:meth:`FaissRetriever.retrieve` encodes one user request and returns the ``k`` best raw item
ids with their inner-product scores, optionally without the items of the user's history.

:class:`Recommender` composes a retriever and an :class:`~serving.inference.ranker.OnnxRanker`:
``k`` candidates from the retriever, each ranked with the user id, its raw item id and whatever
raw features the caller passes (shared ``context`` and per-item ``item_features``), ordered by
the ranker's value formula; the top ``n`` come back with per-stage scores and latencies.

Example::

    retriever = FaissRetriever.load(Path("runs/tt/export"))
    ids, scores = retriever.retrieve({"user_id": "42"}, k=100)
    recommender = Recommender(retriever, OnnxRanker.load(Path("runs/mt/export")),
                              user_feature="user_id", item_feature="post_id")
    page = recommender.recommend({"user_id": "42"}, k=200, n=20)
    page.item_ids[:3], page.latency_ms     # ['17', '3', '88'], {'retrieve': 0.9, ...}
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from recsys.export.manifest import Manifest, ManifestError, load_manifest
from serving.inference.columns import RowColumns
from serving.inference.errors import RequestError
from serving.inference.ranker import OnnxRanker
from serving.inference.retrieval_inputs import TwoTowerInputs
from serving.inference.session import FeedValidator, SessionSettings, open_session

__all__ = ["FaissRetriever", "Recommendation", "Recommender", "RetrieverSettings", "check_count"]


def check_count(value: object, field: str, upper: int) -> int:
    """``value`` as an int in ``[1, upper]``; a :class:`RequestError` naming ``field`` else."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RequestError(f"must be an integer, got {type(value).__name__}", field=field)
    if not 1 <= int(value) <= upper:
        raise RequestError(f"must be in [1, {upper}], got {value}", field=field)
    return int(value)


@dataclass(frozen=True)
class RetrieverSettings:
    """How a :class:`FaissRetriever` runs.

    Attributes:
        session: ONNX Runtime settings of both towers.
        max_k: the most candidates one request may ask for (also capped by the catalog size).
        max_rows: the most users or items one encoding call may hold.
        exclude_history: the default of :meth:`FaissRetriever.retrieve`'s ``exclude_history``.
    """

    session: SessionSettings = field(default_factory=SessionSettings)
    max_k: int = 2000
    max_rows: int = 10_000
    exclude_history: bool = True


def _apply_search_parameters(index: faiss.Index, config: Mapping[str, Any]) -> None:
    """Re-applies the build's ``nprobe`` / ``efSearch`` / refine ``k_factor`` (FAISS does not
    store them in the file)."""
    base = index
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(config.get("refine_k_factor", 1))
        base = faiss.downcast_index(index.base_index)
    try:
        ivf = faiss.extract_index_ivf(base)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        ivf.nprobe = min(int(config.get("nprobe", 1)), ivf.nlist)
    elif hasattr(base, "hnsw"):
        base.hnsw.efSearch = int(config.get("ef_search", 16))


class FaissRetriever:
    """Two-tower retrieval behind ONNX Runtime and FAISS (see the module docstring).

    Attributes:
        inputs: the user and item tables (request -> tower feeds).
        num_items: catalog size ``N``; ``dim``: vector width ``D``.
        counters: the inputs' counters (``dropped`` history items, ``unseen`` side values).
    """

    def __init__(self, export_dir: Path, manifest: Manifest, settings: RetrieverSettings) -> None:
        if manifest.kind != "two_tower":
            raise ManifestError(f"{export_dir}: a {manifest.kind} export, not a two-tower")
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.settings = settings
        self.inputs = TwoTowerInputs.from_manifest(manifest, self.export_dir, settings.max_rows)
        self.counters = self.inputs.counters
        cards = self.inputs.cardinalities
        multi = set(manifest.feature_spec.get("multi", []))
        self._sessions = {}
        self._validators = {}
        for name in ("user_tower", "item_tower"):
            model = manifest.models[name]
            if model.num_dense():
                raise ManifestError(f"{export_dir}: {name} takes dense inputs; not supported")
            self._sessions[name] = open_session(
                self.export_dir / model.file, model, settings.session
            )
            self._validators[name] = FeedValidator(model, cards, multi, settings.max_rows)
        self.dim = int(manifest.models["user_tower"].outputs[0].shape[1])
        self.index, self._positions = self._load_index()
        self.num_items = self.inputs.num_items
        self.providers = tuple(self._sessions["user_tower"].get_providers())

    @classmethod
    def load(cls, export_dir: Path, settings: RetrieverSettings | None = None) -> FaissRetriever:
        """Loads a two-tower export (manifest checked, both towers hashed).

        Raises:
            ManifestError: not a complete two-tower export, a changed model file, a tower or an
                index that does not match the manifest.
        """
        export_dir = Path(export_dir)
        manifest = load_manifest(export_dir, verify=["user_tower", "item_tower"])
        return cls(export_dir, manifest, settings or RetrieverSettings())

    def _load_index(self) -> tuple[faiss.Index, np.ndarray]:
        facts = self.manifest.retrieval.get("index") or {}
        path = self.export_dir / str(facts.get("file", "index/index.faiss"))
        ids_path = path.with_name("ids.npy")
        if not path.exists() or not ids_path.exists():
            raise ManifestError(f"{self.export_dir}: the index ({path}, {ids_path}) is missing")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ManifestError(f"{path}: FAISS cannot read it ({exc})") from exc
        positions = np.load(ids_path, allow_pickle=False)
        n = self.inputs.num_items
        if index.ntotal != n or index.d != self.dim or len(positions) != n:
            raise ManifestError(
                f"{path}: {index.ntotal} vectors of dimension {index.d} and {len(positions)} ids, "
                f"the export has {n} items and vectors of dimension {self.dim}"
            )
        if not np.array_equal(np.sort(positions), np.arange(n)):
            raise ManifestError(f"{ids_path}: the index ids must be the item indices 0 .. {n - 1}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ManifestError(f"{path}: not an inner-product index")
        _apply_search_parameters(index, facts.get("config") or {})
        return index, positions.astype(np.int64)

    # ---------------------------------------------------------------- towers
    def _run(self, name: str, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        (vectors,) = self._sessions[name].run(["vector"], dict(feeds))
        return vectors

    def user_vectors(self, requests: list[Mapping[str, object]]) -> np.ndarray:
        """``B x D`` float32 unit vectors of ``B`` user requests."""
        return self._run("user_tower", self.inputs.user_feeds(requests))

    def encode_items(self, item_ids: list[object]) -> np.ndarray:
        """``N x D`` float32 unit vectors of raw item ids through the item tower."""
        return self._run("item_tower", self.inputs.item_feeds(item_ids))

    def tower_feeds(self, tower: str, feeds: Mapping[str, object]) -> np.ndarray:
        """Vectors of pre-built inputs of ``tower`` (``user_tower`` or ``item_tower``),
        validated (names, dtypes, shapes, lengths, ids in range)."""
        if tower not in self._sessions:
            raise RequestError(f"unknown tower; one of {sorted(self._sessions)}", field="tower")
        return self._run(tower, self._validators[tower].validate(feeds))

    # ------------------------------------------------------------- retrieval
    def retrieve_indices(
        self, request: Mapping[str, object], k: int, exclude_history: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(item indices, scores)`` of the ``k`` best items for one user request, best
        first (fewer when the history leaves fewer than ``k`` items)."""
        k = check_count(k, "k", min(self.num_items, self.settings.max_k))
        feeds = self.inputs.user_feeds([request])
        query = self._run("user_tower", feeds)
        if exclude_history is None:
            exclude_history = self.settings.exclude_history
        exclude = np.unique(feeds["history.ids"]) if exclude_history else np.empty(0, np.int64)
        wanted = min(k + len(exclude), self.num_items)
        scores, positions = self.index.search(np.ascontiguousarray(query, np.float32), wanted)
        scores, positions = scores[0], positions[0]
        keep = positions >= 0
        items = self._positions[positions[keep]]
        scores = scores[keep]
        if len(exclude):
            fresh = ~np.isin(items, exclude)
            items, scores = items[fresh], scores[fresh]
        return items[:k], scores[:k]

    def retrieve(
        self, request: Mapping[str, object], k: int, exclude_history: bool | None = None
    ) -> tuple[list[str], np.ndarray]:
        """The ``k`` best raw item ids for one user request and their ``k`` float32 scores
        (inner products of unit vectors), best first.

        Args:
            request: ``{"user_id": ..., "history": [...] (optional), <user feature>: ...}``.
            k: candidates wanted, ``1 <= k <= min(num_items, max_k)``.
            exclude_history: leave out the items of the history the request used (the stored
                one, or the request's); default ``settings.exclude_history``.

        Raises:
            RequestError: a bad ``k``, an unknown user, a malformed request.
        """
        items, scores = self.retrieve_indices(request, k, exclude_history)
        return self.inputs.raw_item_ids(items), scores


@dataclass
class Recommendation:
    """The top ``n`` of one request, best first.

    Attributes:
        item_ids: raw item ids (``n``).
        values: the value formula's values (``n`` float64).
        probabilities: task -> ``n`` float32 ranker probabilities.
        retrieval_scores: ``n`` float32 retriever scores.
        latency_ms: ``retrieve``, ``rank``, ``order`` and ``total`` milliseconds.
    """

    item_ids: list[str]
    values: np.ndarray
    probabilities: dict[str, np.ndarray]
    retrieval_scores: np.ndarray
    latency_ms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists of floats)."""
        return {
            "item_ids": self.item_ids,
            "values": self.values.tolist(),
            "probabilities": {t: p.tolist() for t, p in self.probabilities.items()},
            "retrieval_scores": self.retrieval_scores.tolist(),
            "latency_ms": dict(self.latency_ms),
        }


class Recommender:
    """Retrieve ``k`` -> rank -> order by value -> top ``n`` (see the module docstring).

    Args:
        retriever: the two-tower side.
        ranker: the ranker; its raw features must include ``user_feature`` and
            ``item_feature``.
        user_feature: the ranker's raw feature holding the user id (e.g. ``user_id``).
        item_feature: the ranker's raw feature holding the retrieved raw item id (e.g.
            ``post_id`` or ``item_id``).
    """

    def __init__(
        self,
        retriever: FaissRetriever,
        ranker: OnnxRanker,
        *,
        user_feature: str = "user_id",
        item_feature: str = "item_id",
    ) -> None:
        for name, value in (("user_feature", user_feature), ("item_feature", item_feature)):
            if value not in ranker.raw_features:
                raise ValueError(
                    f"{name} {value!r} is not a raw feature of the ranker "
                    f"({list(ranker.raw_features)})"
                )
        self.retriever = retriever
        self.ranker = ranker
        self.user_feature = user_feature
        self.item_feature = item_feature

    def _columns(
        self,
        user_id: object,
        item_ids: list[str],
        context: Mapping[str, object],
        item_features: Mapping[str, Mapping[str, object]],
    ) -> RowColumns:
        n = len(item_ids)
        raw = set(self.ranker.raw_features)
        fixed = {self.user_feature, self.item_feature}
        for key in context:
            if key not in raw or key in fixed:
                raise RequestError("not a raw feature the caller may set", field=f"context.{key}")
        values: dict[str, list[Any]] = {}
        absent: dict[str, int] = {}
        for f in self.ranker.raw_features:
            if f == self.user_feature:
                values[f] = [user_id] * n
            elif f == self.item_feature:
                values[f] = list(item_ids)
            elif f in context:
                values[f] = [context[f]] * n
            else:
                values[f] = [None] * n
            absent[f] = 0 if (f in fixed or f in context) else n
        for i, item in enumerate(item_ids):
            for key, value in (item_features.get(item) or {}).items():
                if key not in raw or key in fixed:
                    raise RequestError(
                        "not a raw feature the caller may set", field=f"item_features.{key}", row=i
                    )
                if absent[key] and values[key][i] is None:
                    absent[key] -= 1
                values[key][i] = value
        return RowColumns(n, values, absent)

    def recommend(
        self,
        request: Mapping[str, object],
        k: int,
        n: int,
        *,
        context: Mapping[str, object] | None = None,
        item_features: Mapping[str, Mapping[str, object]] | None = None,
        exclude_history: bool | None = None,
    ) -> Recommendation:
        """The top ``n`` of ``k`` retrieved candidates for one user request.

        Args:
            request: the retriever's user request (``user_id`` also goes to the ranker).
            k: candidates retrieved and ranked; ``n``: items returned, ``1 <= n <= k``.
            context: raw ranker features shared by every candidate (e.g. ``country``).
            item_features: raw item id -> raw ranker features of that candidate.
            exclude_history: passed to :meth:`FaissRetriever.retrieve`.

        Raises:
            RequestError: a bad ``k`` or ``n``, an unknown user, a feature the ranker does not
                read, a value of the wrong type.
        """
        start = time.perf_counter()
        k = check_count(k, "k", min(self.retriever.num_items, self.retriever.settings.max_k))
        n = check_count(n, "n", k)
        if not isinstance(request, Mapping):
            raise RequestError("must be an object", field="request")
        item_ids, retrieval_scores = self.retriever.retrieve(request, k, exclude_history)
        retrieved = time.perf_counter()
        columns = self._columns(
            request.get("user_id"), item_ids, context or {}, item_features or {}
        )
        probabilities = self.ranker.score_columns(columns)
        ranked = time.perf_counter()
        values = self.ranker.values(probabilities)
        order = np.argsort(-values, kind="stable")[:n]
        done = time.perf_counter()
        return Recommendation(
            item_ids=[item_ids[i] for i in order.tolist()],
            values=values[order],
            probabilities={t: p[order] for t, p in probabilities.items()},
            retrieval_scores=retrieval_scores[order],
            latency_ms={
                "retrieve": (retrieved - start) * 1e3,
                "rank": (ranked - retrieved) * 1e3,
                "order": (done - ranked) * 1e3,
                "total": (done - start) * 1e3,
            },
        )
