"""Fixtures the adapter tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from serving.social.storage.redis import make_redis
from serving.social.storage.sql.testing import fresh_engine


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis (keys go under the test's ``redis_prefix``)."""
    c = make_redis(redis_url)
    yield c
    c.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty, migrated database: a SQLite file, or the session's PostgreSQL database with
    every table emptied."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    engine = fresh_engine(request.param, tmp_path=tmp_path, url=url)
    yield engine
    engine.dispose()
