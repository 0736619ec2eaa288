"""Login throttling by client address: ``X-Forwarded-For`` counts only when the peer is a
configured proxy, so a client rotating the header is still one client; registration shares the
login bucket (it answers whether a username is taken)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.social.api import create_app
from serving.social.settings import settings_from_mapping
from tests.serving.social.api.helpers import PASSWORD, register


def _client(make_backend, peer: str, proxies: list[str]) -> TestClient:
    backend = make_backend(
        {
            "rate_limits": {"enabled": True, "auth": {"capacity": 3, "refill_per_s": 0.001}},
            "server": {"trusted_proxies": proxies},
        }
    )
    return TestClient(create_app(backend=backend, start_workers=False), client=(peer, 40000))


def _logins(api: TestClient, forwarded: list[str | None]) -> list[int]:
    codes = []
    for hop in forwarded:
        headers = {"X-Forwarded-For": hop} if hop else {}
        body = {"username": "nobody", "password": PASSWORD}
        codes.append(api.post("/v1/auth/login", json=body, headers=headers).status_code)
    return codes


def test_rotating_forwarded_for_does_not_bypass_the_limit(make_backend) -> None:
    with _client(make_backend, "127.0.0.1", []) as api:
        rotating = [f"10.0.0.{i}" for i in range(6)]
        assert _logins(api, rotating) == [401, 401, 401, 429, 429, 429]


def test_a_trusted_proxy_forwards_the_client_address(make_backend) -> None:
    with _client(make_backend, "10.1.2.3", ["10.1.0.0/16"]) as api:
        # each real client has its own bucket
        assert _logins(api, ["203.0.113.7"] * 4) == [401, 401, 401, 429]
        assert _logins(api, ["203.0.113.8"]) == [401]
        # entries left of the proxy's own are the client's to forge: only the last one counts
        forged = [f"198.51.100.{i}, 203.0.113.7" for i in range(3)]
        assert _logins(api, forged) == [429, 429, 429]
        # a chain through two trusted proxies: the right-most untrusted hop is the client
        assert _logins(api, ["203.0.113.9, 10.1.9.9"]) == [401]


def test_registration_is_throttled_like_login(make_backend) -> None:
    with _client(make_backend, "127.0.0.1", []) as api:
        register(api, "ana")
        taken = api.post("/v1/auth/register", json={"username": "ana", "password": PASSWORD})
        assert taken.status_code == 409
        codes = [
            api.post(
                "/v1/auth/register",
                json={"username": f"user{i}", "password": PASSWORD},
                headers={"X-Forwarded-For": f"10.9.9.{i}"},
            ).status_code
            for i in range(2)
        ]
        assert codes == [201, 429]


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ValueError, match=r"server.trusted_proxies has 'proxy.local'"):
        settings_from_mapping({"server": {"trusted_proxies": ["proxy.local"]}})
