"""The feature store's offline data: Parquet sources and a label table written from the
synthetic generator or from the backend's events export (then ``feast apply`` /
``materialize`` in ``pipelines/feature_repo``, or :func:`recsys.features.store.open_store`).

    python -m pipelines.feature_sources synthetic out=DIR [n_users=1500 ...]
    python -m pipelines.feature_sources export export_dir=EXPORT out=DIR

Modules: :mod:`.inputs` (event tables and labels from either origin), :mod:`.job` (writing
the folder, applying the definitions), :mod:`.cli` (argument parsing). Imports ``recsys`` (the
table builders; Feast only through :mod:`recsys.features.store`, when applying).
"""

from pipelines.feature_sources.inputs import export_inputs, synthetic_inputs
from pipelines.feature_sources.job import FeatureData, write_feature_data

__all__ = ["FeatureData", "export_inputs", "synthetic_inputs", "write_feature_data"]
