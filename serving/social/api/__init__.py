"""The HTTP API (FastAPI): :func:`create_app` builds it over a
:class:`~serving.social.backend.Backend`.

Every route is under ``/v1``; the OpenAPI schema is served at ``/openapi.json`` (docs at
``/docs``). Writes and reads need ``Authorization: Bearer <token>`` from register or login and
are rate-limited per user with token buckets (``rate_limits.*``; registration and login per
client address): an exhausted bucket answers 429 with ``Retry-After`` in whole seconds.

Errors are JSON ``{"error": {"code": ..., "message": ..., "field": ...}}`` with the status of
the :class:`~serving.social.domain.BackendError` raised; request-shape errors are 422 with the
offending fields listed. Blobs are served from ``/v1/blobs/{sha256}`` with
``Cache-Control: public, max-age=..., immutable`` and an ETag: a key never changes content.

What lives here:

- :mod:`~serving.social.api.app`: the app factory, its lifespan and the error handlers;
- :mod:`~serving.social.api.deps`: the dependencies every route shares (the backend, the
  current user from the bearer token, rate limits, path ids, pagination parameters);
- :mod:`~serving.social.api.routes`: one ``APIRouter`` per service.

This package is the composition root of the backend, with the workers, the CLI and the demo:
it may import the backend, the services, storage, media, the domain and the settings, and
nothing below it (services, storage, media) may import it (an import-linter contract).
"""

from __future__ import annotations

from serving.social.api.app import create_app

__all__ = ["create_app"]
