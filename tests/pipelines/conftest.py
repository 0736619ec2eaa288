"""The real PostgreSQL and Redis of the backend's tests (``tests/serving/social/conftest.py``):
the export runs against a production backend too. They skip where the servers are not
reachable, unless RECSYS_REQUIRE_SERVICES=1."""

from tests.serving.social.conftest import (  # noqa: F401 (fixtures)
    postgres_server_url,
    postgres_url,
    redis_prefix,
    redis_url,
)
