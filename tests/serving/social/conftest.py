"""Real PostgreSQL and Redis for the production adapters' tests.

`scripts/services.sh start` starts both on 127.0.0.1 (make test runs it and exports their URLs).
Where they are not reachable the tests that need them skip, unless RECSYS_REQUIRE_SERVICES=1
(set by make test), in which case they fail: CI must never skip the production half silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

DEFAULT_PG = "postgresql+psycopg://recsys@127.0.0.1:55432/recsys"
DEFAULT_REDIS = "redis://127.0.0.1:56379/0"


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} not reachable ({error}); start it with scripts/services.sh start"
    if os.environ.get("RECSYS_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the server's maintenance database (``recsys``); tests create their own databases."""
    import psycopg

    url = os.environ.get("RECSYS_TEST_POSTGRES_URL", DEFAULT_PG)
    try:
        psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3).close()
    except Exception as error:
        _unavailable("PostgreSQL", error)
    return url


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database for this test session (dropped at the end)."""
    import psycopg

    name = f"recsys_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = postgres_server_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server_url.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("RECSYS_TEST_REDIS_URL", DEFAULT_REDIS)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as error:
        _unavailable("Redis", error)
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# --- a whole backend on either storage --------------------------------------------------------


@pytest.fixture(params=["embedded", "production"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    """The API suite runs once per storage configuration."""
    return request.param


@pytest.fixture
def backend_settings(storage_kind: str, tmp_path, request: pytest.FixtureRequest):
    """Settings for one test's backend: a fresh SQLite file, or the session's PostgreSQL
    database emptied plus a Redis prefix of the test's own. Rate limits are off (their own
    tests turn them on) and the celebrity threshold is 3 followers."""
    from serving.social.settings import settings_from_mapping

    values: dict = {
        "storage": storage_kind,
        "data_dir": str(tmp_path / "backend"),
        "fanout": {"threshold": 3},
        "rate_limits": {"enabled": False},
    }
    if storage_kind == "production":
        pg = request.getfixturevalue("postgres_url")
        values["redis_url"] = request.getfixturevalue("redis_url")
        values["redis_prefix"] = request.getfixturevalue("redis_prefix")
        values["postgres_url"] = pg
        from serving.social.storage.sql.testing import fresh_engine

        fresh_engine("postgresql", url=pg).dispose()  # migrated, every table emptied
    return settings_from_mapping(values)


@pytest.fixture
def clock():
    from serving.social.clock import ManualClock

    return ManualClock()


@pytest.fixture
def make_backend(backend_settings, clock):
    """``make_backend(**settings overrides)`` -> an open Backend (closed after the test)."""
    import dataclasses

    from serving.social.backend import open_backend
    from serving.social.settings import settings_from_mapping

    opened = []

    def factory(overrides: dict | None = None, ranking=None):
        settings = backend_settings
        if overrides:
            merged = _merge(dataclasses.asdict(backend_settings), overrides)
            settings = settings_from_mapping(merged)
        backend = open_backend(settings, clock, ranking)
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        backend.close()


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def backend(make_backend):
    return make_backend()


@pytest.fixture
def workers(backend):
    from serving.social.workers import Workers

    return Workers(backend, consumer="test-worker")


@pytest.fixture
def api(backend):
    """An HTTP client (FastAPI's TestClient) on the backend; workers are drained by hand."""
    from fastapi.testclient import TestClient

    from serving.social.api import create_app

    with TestClient(create_app(backend=backend, start_workers=False)) as client:
        yield client
