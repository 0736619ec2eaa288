"""A tiny synthetic world's feature data folder (sources, labels, an applied registry), the
real Redis of the backend's tests, and a clock after every timestamp used here."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.data.synthetic import SocialConfig
from tests.serving.social.conftest import redis_url  # noqa: F401 (fixture)

TINY = SocialConfig(n_users=200, n_authors=20, n_posts=300, n_impressions=3000, chunk_rows=1000)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR`` with ``sources/*.parquet``, ``labels.parquet`` and ``registry.db`` of
    :data:`TINY` (read-only for the tests: copy it to change it)."""
    from pipelines.feature_sources import synthetic_inputs, write_feature_data

    out = tmp_path_factory.mktemp("feature_data")
    tables, labels = synthetic_inputs(TINY)
    write_feature_data(tables, labels, out)
    return out
