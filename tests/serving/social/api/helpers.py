"""Small helpers for the API tests: sign-ups, bearer headers, test images."""

from __future__ import annotations

import io
from dataclasses import dataclass

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(api: TestClient, username: str) -> Account:
    reply = api.post("/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    return Account(body["user"]["id"], username, body["token"])


def users(api: TestClient, *names: str) -> list[Account]:
    return [register(api, name) for name in names]


def follow(api: TestClient, follower: Account, followee: Account) -> None:
    reply = api.put(f"/v1/users/{followee.id}/follow", headers=follower.auth)
    assert reply.status_code == 200, reply.text


def post(api: TestClient, author: Account, caption: str = "hi", **extra: object) -> int:
    reply = api.post("/v1/posts", json={"caption": caption, **extra}, headers=author.auth)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def feed_ids(api: TestClient, account: Account, **params: object) -> list[int]:
    reply = api.get("/v1/feed", params=params, headers=account.auth)
    assert reply.status_code == 200, reply.text
    return [item["id"] for item in reply.json()["items"]]


def jpeg(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


def upload(
    api: TestClient,
    account: Account,
    data: bytes,
    mime: str = "image/jpeg",
    name: str = "photo.jpg",
):
    return api.post("/v1/media", files={"file": (name, data, mime)}, headers=account.auth)


def login(api: TestClient, account: Account) -> Account:
    """A fresh session for ``account`` (e.g. after the clock jumped past the token lifetime)."""
    reply = api.post("/v1/auth/login", json={"username": account.username, "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return Account(account.id, account.username, reply.json()["token"])
