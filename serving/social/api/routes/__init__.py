"""One :class:`fastapi.APIRouter` per service, each in its own module: ``ops`` (health),
``accounts`` (auth, profiles and the social graph), ``posts``, ``media`` (uploads and blobs),
``feed``, ``interactions`` and ``stories``. :data:`ROUTERS` is the order the app includes them
in (the order of the OpenAPI paths and tags).

A route module may import :mod:`serving.social.api.deps` (its dependencies), the services'
types (the route tables name service methods), the domain and :mod:`serving.social.media`;
route modules never import each other or :mod:`serving.social.api.app` (import-linter
contracts). They hold no business rules: a route checks the request (its shape, an upload's
size), calls one service method, and shapes the HTTP answer (status, headers, blob caching).
"""

from __future__ import annotations

from fastapi import APIRouter

from serving.social.api.routes import accounts, feed, interactions, media, ops, posts, stories

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    ops.router,
    accounts.router,
    posts.router,
    media.router,
    feed.router,
    interactions.router,
    stories.router,
)
