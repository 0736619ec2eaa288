"""The OpenAPI document as the contract: the bearer security scheme, every error documented with
the one error model, exact integer bounds, strict body types, the Allow header of every path,
and Starlette's own errors in the documented format."""

from __future__ import annotations

import json

from tests.serving.social.api.helpers import users


def test_security_scheme_and_documented_errors(api) -> None:
    schema = api.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    error_ref = "#/components/schemas/ErrorBody"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = [p["name"].lower() for p in operation.get("parameters", [])]
            assert "authorization" not in names, (method, path)  # a security scheme instead
            responses = operation["responses"]
            for code, response in responses.items():
                if code.startswith(("4", "5")) and path != "/readyz":
                    content = response["content"]["application/json"]["schema"]
                    assert content == {"$ref": error_ref}, (method, path, code)
            assert "500" in responses, (method, path)
            if path.startswith("/v1/") and not path.startswith("/v1/auth/") and "blobs" not in path:
                assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
                assert {"401", "422", "429", "503"} <= set(responses), (method, path)
    assert "410" in schema["paths"]["/v1/feed"]["get"]["responses"]
    assert "413" in schema["paths"]["/v1/media"]["post"]["responses"]


def test_integer_bounds_survive_a_float64_reader(api) -> None:
    raw = api.get("/openapi.json").text
    for value in (json.loads(raw, parse_int=float), json.loads(raw)):
        param = value["paths"]["/v1/posts/{post_id}"]["get"]["parameters"][0]["schema"]
        assert int(param["maximum"]) == 2**53 - 1 and param["format"] == "int64"


def test_allow_lists_every_method_of_the_path(api) -> None:
    (ana,) = users(api, "ana")
    options = api.options("/v1/posts/1")
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == {"GET", "DELETE", "OPTIONS"}
    wrong = api.patch("/v1/posts/1", headers=ana.auth)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "DELETE", "OPTIONS"}
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    like = api.options("/v1/posts/1/like")
    assert set(like.headers["allow"].split(", ")) == {"PUT", "DELETE", "OPTIONS"}


def test_starlette_errors_use_the_error_format(api) -> None:
    (ana,) = users(api, "ana")
    missing = api.get("/v1/nowhere", headers=ana.auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    not_json = api.post(
        "/v1/posts",
        content=b"{not json",
        headers={**ana.auth, "Content-Type": "application/json"},
    )
    assert not_json.status_code in (400, 422)
    assert set(not_json.json()) == {"error"} and not_json.json()["error"]["message"]
    boolean = api.post(
        "/v1/events/impressions",
        json={"events": [{"post_id": 1, "dwell_ms": True}]},
        headers=ana.auth,
    )
    assert boolean.status_code == 422
    whole = api.post(
        "/v1/events/impressions",
        json={"events": [{"post_id": 1, "dwell_ms": 5.0}]},
        headers=ana.auth,
    )
    assert whole.status_code == 200  # 5.0 is the JSON integer 5
