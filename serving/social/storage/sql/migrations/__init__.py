"""Alembic migrations of the backend's metadata database (see :func:`..engine.migrate`)."""
