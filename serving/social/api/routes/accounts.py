"""Accounts: registration, login and logout (``/v1/auth/*``), profiles (``/v1/users/...``) and
the social graph (``PUT``/``DELETE /v1/users/{target}/follow`` and ``.../block``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from pydantic import Field

from serving.social.api.deps import (
    BackendDep,
    Body,
    Id,
    Reader,
    Text,
    Writer,
    auth_limited,
    bearer_token,
)
from serving.social.services.accounts import AccountService, Session

router = APIRouter()


class RegisterIn(Body):
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=256)
    country: Text = Field("", max_length=8)
    age_bucket: Text = Field("", max_length=16)


class LoginIn(Body):
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=256)


def _session_view(session: Session) -> dict[str, Any]:
    """What register and login answer: the user, the bearer token and when it expires."""
    return {
        "user": {"id": session.user.id, "username": session.user.username},
        "token": session.token,
        "expires_at": session.expires_at,
    }


@router.post(
    "/v1/auth/register",
    status_code=201,
    tags=["accounts"],
    dependencies=[Depends(auth_limited)],
)
def register(body: RegisterIn, backend: BackendDep) -> dict[str, Any]:
    session = backend.accounts.register(
        body.username, body.password, country=body.country, age_bucket=body.age_bucket
    )
    return _session_view(session)


@router.post("/v1/auth/login", tags=["accounts"], dependencies=[Depends(auth_limited)])
def login(body: LoginIn, backend: BackendDep) -> dict[str, Any]:
    return _session_view(backend.accounts.login(body.username, body.password))


@router.post("/v1/auth/logout", status_code=204, tags=["accounts"])
def logout(
    backend: BackendDep, user_id: Writer, authorization: Annotated[str, Header()]
) -> Response:
    backend.accounts.logout(bearer_token(authorization))
    return Response(status_code=204)


@router.get("/v1/users/me", tags=["accounts"])
def me(backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.accounts.profile(user_id, user_id)


@router.get("/v1/users/{target}", tags=["accounts"])
def profile(target: Id, backend: BackendDep, user_id: Reader) -> dict[str, Any]:
    return backend.accounts.profile(user_id, target)


# --- the graph: PUT adds an edge, DELETE removes it ---------------------------------------

GraphChange = Callable[[AccountService, int, int], bool]

#: (method, edge, state key, state value, service method) of each graph route.
GRAPH_ROUTES: tuple[tuple[str, str, str, bool, GraphChange], ...] = (
    ("PUT", "follow", "following", True, AccountService.follow),
    ("DELETE", "follow", "following", False, AccountService.unfollow),
    ("PUT", "block", "blocked", True, AccountService.block),
    ("DELETE", "block", "blocked", False, AccountService.unblock),
)


def _graph_endpoint(state: str, on: bool, change: GraphChange) -> Callable[..., dict[str, Any]]:
    """The endpoint that applies ``change`` (the caller -> ``target``) and answers
    ``{state: on, "changed": <whether an edge was added or removed>}``."""

    def endpoint(target: Id, backend: BackendDep, user_id: Writer) -> dict[str, Any]:
        return {state: on, "changed": change(backend.accounts, user_id, target)}

    return endpoint


def _add_graph_routes() -> None:
    """Adds :data:`GRAPH_ROUTES`, each named after its service method (``follow``, ...)."""
    for method, edge, state, on, change in GRAPH_ROUTES:
        router.add_api_route(
            f"/v1/users/{{target}}/{edge}",
            _graph_endpoint(state, on, change),
            methods=[method],
            name=change.__name__,
            tags=["graph"],
        )


_add_graph_routes()
