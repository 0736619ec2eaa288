"""``OnnxRanker``: a ranker export served by ONNX Runtime, with no torch at request time.

It loads ``export_dir`` (``load_manifest``: format version and file hashes checked), opens
``ranker.onnx`` (:mod:`serving.inference.session`: thread settings, CUDA first when available,
a signature that differs from the manifest refuses to start) and the request-time
preprocessing (:mod:`serving.inference.preprocess`). Three ways in:

* :meth:`OnnxRanker.score` - raw feature rows (the training data's names), plus the features
  every row shares (the user's) sent once -> per-task probabilities, ``{task: B float32}``;
* :meth:`OnnxRanker.score_feeds` - pre-built model inputs (validated: names, dtypes, shapes,
  lengths, ids in range) -> the same;
* :meth:`OnnxRanker.scores` - the social backend's ranking-client protocol
  (``serving/social/ranking.py``): ``scores(user_id, candidates) -> list[float]``, one value
  per candidate from the value formula over the task probabilities. Each candidate's dataclass
  fields are its raw features, the viewer's fields (``user_id`` and the user-level features)
  are shared by every candidate; fields that are not raw features of the model are ignored
  (on this path only), features no field carries count as absent.

The ranker is read-only after construction and safe to call from several threads (ONNX
Runtime sessions are; the counters take a lock).

Example::

    ranker = OnnxRanker.load(Path("runs/x/export"))
    probs = ranker.score([{"post_id": 12, "topic": "travel"}, {"post_id": 40}],
                         shared={"user_id": 7, "country": "fr"})
    probs["like"].shape                     # (2,)
    ranker.scores(7, candidates)            # [0.93, 0.41, ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from recsys.export.manifest import Manifest, ManifestError, load_manifest
from recsys.ranking.value import DEFAULT_WEIGHTS, ValueFormula
from serving.inference.columns import RowColumns, check_row_count
from serving.inference.errors import RequestError
from serving.inference.preprocess import PreprocessSettings, RankerPreprocessor
from serving.inference.session import FeedValidator, SessionSettings, open_session

__all__ = ["OnnxRanker", "RankerSettings", "default_value_formula", "load_in_process_ranker"]


def default_value_formula(tasks: Sequence[str]) -> ValueFormula:
    """``DEFAULT_WEIGHTS`` restricted to ``tasks``; a model with none of those tasks (a CTR
    model's ``click``) gets weight 1 on each of its tasks."""
    weights = {t: w for t, w in DEFAULT_WEIGHTS.items() if t in tasks}
    return ValueFormula(weights=weights or dict.fromkeys(tasks, 1.0))


@dataclass(frozen=True)
class RankerSettings:
    """How an :class:`OnnxRanker` runs.

    Attributes:
        session: ONNX Runtime threads, execution mode, optimization level, providers.
        preprocess: request limits (``max_rows``, ``ignored_keys``).
        value: the value formula of :meth:`OnnxRanker.scores` (``None``:
            :func:`default_value_formula` of the model's tasks).
    """

    session: SessionSettings = field(default_factory=SessionSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    value: ValueFormula | None = None


class OnnxRanker:
    """A ranker export behind ONNX Runtime (see the module docstring).

    Attributes:
        name: ``onnx`` (the ranking-client protocol's name of this ranker).
        export_dir, manifest: what was loaded.
        tasks: the model's outputs, in order (``T``).
        preprocessor: raw rows -> feeds; its ``counters`` feed ``/metrics``.
        value_formula: task probabilities -> one value per candidate.
        providers: the execution providers the session uses.
    """

    name = "onnx"

    def __init__(self, export_dir: Path, manifest: Manifest, settings: RankerSettings) -> None:
        if manifest.kind != "ranker":
            raise ManifestError(f"{export_dir}: a {manifest.kind} export, not a ranker")
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.settings = settings
        model = manifest.models["ranker"]
        self.tasks = tuple(t.name for t in model.outputs)
        self.preprocessor = RankerPreprocessor.from_manifest(
            manifest, self.export_dir, settings.preprocess
        )
        if list(self.preprocessor.input_names) != [t.name for t in model.inputs]:
            raise ManifestError(
                f"{export_dir}: preprocessing makes inputs {self.preprocessor.input_names} "
                f"but ranker.onnx takes {[t.name for t in model.inputs]}"
            )
        formula = settings.value or default_value_formula(self.tasks)
        try:
            formula.check_tasks(self.tasks)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        self.value_formula = formula
        spec = manifest.feature_spec["sparse"]
        self.validator = FeedValidator(
            model,
            {f["name"]: f["cardinality"] for f in spec},
            {f["name"] for f in spec if f["multi_hot"]},
            settings.preprocess.max_rows,
        )
        self.session = open_session(self.export_dir / model.file, model, settings.session)
        self.providers = tuple(self.session.get_providers())
        self._outputs = list(self.tasks)

    @classmethod
    def load(cls, export_dir: Path, settings: RankerSettings | None = None) -> OnnxRanker:
        """Loads a ranker export (manifest checked, ``ranker.onnx`` hashed).

        Raises:
            ManifestError: not a complete ranker export, a version mismatch, a changed model
                file, or a model whose signature differs from its manifest.
        """
        manifest = load_manifest(Path(export_dir), verify=["ranker"])
        return cls(Path(export_dir), manifest, settings or RankerSettings())

    @property
    def raw_features(self) -> tuple[str, ...]:
        """The raw feature names a row may carry."""
        return self.preprocessor.raw_features

    # ---------------------------------------------------------------- scoring
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bare session on feeds already valid: ``{task: B float32}``."""
        outputs = self.session.run(self._outputs, dict(feeds))
        return dict(zip(self.tasks, outputs))

    def score(
        self,
        rows: Sequence[Mapping[str, object]],
        shared: Mapping[str, object] | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-task probabilities of ``B`` raw rows: ``{task: B float32}``.

        ``shared``: raw features of every row (the user's), transformed once; the same result
        as merging them into each row, a row's own key winning.

        Raises:
            RequestError: an empty or oversize request, an unknown feature, a wrong type.
        """
        return self.run(self.preprocessor.transform(rows, shared))

    def score_columns(self, columns: RowColumns) -> dict[str, np.ndarray]:
        """Like :meth:`score` for a request already in columns."""
        return self.run(self.preprocessor.transform_columns(columns))

    def score_feeds(self, feeds: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Per-task probabilities of pre-built inputs (``dense`` ``B x D`` float32, ``<f>.ids``
        int64, ``<f>.lengths`` ``B`` int32).

        Raises:
            RequestError: a missing or unknown input, a wrong dtype or shape, lengths that do
                not add up, an id outside ``[0, cardinality)`` (names the input).
        """
        return self.run(self.validator.validate(feeds))

    def values(self, probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
        """The value formula over ``{task: N}`` probabilities -> ``N`` float64."""
        return self.value_formula(probabilities)

    # ------------------------------------------------- ranking-client protocol
    def candidate_columns(
        self, candidates: Sequence[Any], shared: Mapping[str, object] | None = None
    ) -> RowColumns:
        """Raw feature columns of ``candidates`` (dataclass instances) with the ``shared``
        raw features (the viewer's, which win over a candidate field of the same name) once;
        a feature in neither is absent."""
        n = len(candidates)
        check_row_count(n, self.settings.preprocess.max_rows, "candidates")
        kinds = set(map(type, candidates))
        for kind in kinds:
            if not dataclasses.is_dataclass(kind):
                raise RequestError(
                    f"candidates must be dataclass instances, got {kind.__name__}",
                    field="candidates",
                )
        fields = set.intersection(*({f.name for f in dataclasses.fields(k)} for k in kinds))
        shared = shared or {}
        columns = RowColumns(n, {}, {})
        for f in self.raw_features:
            if f in fields and f not in shared:
                columns.values[f] = list(map(attrgetter(f), candidates))
                columns.absent[f] = 0
            else:
                columns.shared[f] = shared.get(f)
                columns.absent[f] = 0 if f in shared else n
        return columns

    def scores(self, viewer: Any, candidates: Sequence[Any]) -> list[float]:
        """One value per candidate for ``viewer`` (higher ranks first): the value formula over
        the task probabilities of each candidate's raw features (see the module docstring).

        ``viewer`` is a dataclass with ``user_id`` and the user-level raw features
        (``serving.social.ranking.Viewer``); its fields that are raw features of the model
        apply to every candidate."""
        raw = set(self.raw_features)
        user = {k: v for k, v in dataclasses.asdict(viewer).items() if k in raw}
        probabilities = self.score_columns(self.candidate_columns(candidates, user))
        return self.values(probabilities).tolist()


def load_in_process_ranker(export_dir: str | Path, threads: int = 1) -> OnnxRanker:
    """The backend's in-process ranker (``ranker.kind: onnx``): a ranker export on ONNX
    Runtime with ``threads`` intra-op threads; a bad export refuses to load (ManifestError)."""
    settings = RankerSettings(session=SessionSettings(intra_op_num_threads=threads))
    return OnnxRanker.load(Path(export_dir), settings)
