"""One :class:`fastapi.APIRouter` per service, each in its own module: ``ops`` (health),
``accounts`` (auth, profiles and the social graph), ``posts``, ``media`` (uploads and blobs),
``feed``, ``interactions`` and ``stories``. :data:`ROUTERS` is the order the app includes them
in (the order of the OpenAPI paths and tags).

A route module imports :mod:`serving.social.api.deps` (its dependencies), the backend, the
domain and the settings; route modules never import each other or the app, and hold no rules
of their own: each route checks the request's shape and calls one service method.
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
