"""The HTTP API stand-in: the JWT authorizer answers 401 before any function runs; payload 2.0; CORS."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from local.http_api import HttpApi
from local.resolve import Resolver
from tests.local.servers import FakeFunctions
from tests.unit.conftest_auth import (
    CLIENT_ID,
    ISSUER,
    USER_SUB,
    SigningKey,
    access_claims,
    id_claims,
    serve_jwks,
    sign,
)

WEB_ORIGIN = "http://127.0.0.1:48200"
HANDLER_REPLY = {
    "statusCode": 201,
    "headers": {"content-type": "application/json", "x-request-note": "handled"},
    "body": json.dumps({"created": True}),
}


@pytest.fixture
def functions(template: dict[str, Any]) -> FakeFunctions:
    resolver = Resolver(template, "local", parameter_overrides={"WebOrigin": WEB_ORIGIN})
    # The pool and client moto would have created; conftest_auth's tokens are issued for them.
    resolver.physical_ids.update(UserPool=ISSUER.rsplit("/", 1)[1], UserPoolClient=CLIENT_ID)
    fakes = FakeFunctions(resolver)
    fakes.replies["HttpApiFunction"] = lambda event: HANDLER_REPLY
    return fakes


@pytest.fixture(scope="module")
def jwks_url(pool_key: SigningKey) -> Iterator[str]:
    """The user pool's keys, published by a loopback server."""
    with serve_jwks([pool_key]) as jwks:
        yield jwks.url


@pytest.fixture
def client(functions: FakeFunctions, jwks_url: str) -> Iterator[TestClient]:
    """The HTTP API, its authorizer reading the pool's keys from the JWKS server (as from Cognito)."""
    api = HttpApi(functions.host.resolver, functions.host, "HttpApi", jwks_url)
    with TestClient(api.app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged_tokens(pool_key: SigningKey, attacker_key: SigningKey) -> dict[str, dict[str, str]]:
    now = int(time.time())
    return {
        "no header": {},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": bearer("not-a-jwt"),
        "three garbage segments": bearer("aaa.bbb.ccc"),
        "expired": bearer(sign(pool_key, id_claims(exp=now - 5, iat=now - 3600))),
        "wrong issuer": bearer(
            sign(pool_key, id_claims(iss="https://cognito-idp.us-east-1.amazonaws.com/other"))
        ),
        "wrong audience": bearer(sign(pool_key, id_claims(aud="some-other-client"))),
        "no audience at all": bearer(sign(pool_key, id_claims(aud=None))),
        "no expiry": bearer(sign(pool_key, id_claims(exp=None))),
        "signed by another key under the pool's kid": bearer(
            sign(attacker_key, id_claims(), kid=pool_key.kid)
        ),
        "unknown kid": bearer(sign(attacker_key, id_claims())),
        "alg none": bearer(
            ".".join(
                [
                    _b64({"alg": "none", "typ": "JWT", "kid": pool_key.kid}),
                    _b64(id_claims()),
                    "",
                ]
            )
        ),
    }


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


BAD_TOKENS = [
    "no header",
    "empty bearer",
    "garbage",
    "three garbage segments",
    "expired",
    "wrong issuer",
    "wrong audience",
    "no audience at all",
    "no expiry",
    "signed by another key under the pool's kid",
    "unknown kid",
    "alg none",
]


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_request_without_a_valid_token_gets_401_and_no_function_runs(
    client: TestClient,
    functions: FakeFunctions,
    pool_key: SigningKey,
    attacker_key: SigningKey,
    case: str,
) -> None:
    # Given a request whose credentials API Gateway's JWT authorizer would refuse
    headers = forged_tokens(pool_key, attacker_key)[case]

    # When it calls a protected route, even with a body that would change something
    response = client.delete("/api/conversations/c1", headers=headers)

    # Then it gets API Gateway's 401 and the function never sees it
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert functions.calls["HttpApiFunction"] == []


def test_a_valid_id_token_reaches_the_function_as_a_payload_2_event(
    client: TestClient, functions: FakeFunctions, pool_key: SigningKey
) -> None:
    # Given a valid Cognito ID token
    token = sign(pool_key, id_claims())

    # When the web chat calls the API with it
    response = client.post(
        "/api/conversations/c1/messages?limit=5&limit=6",
        headers={**bearer(token), "X-Custom-Header": "Yes", "Cookie": "a=1; b=2"},
        content=b'{"text":"hi"}',
    )

    # Then the function's status, headers and body are the response
    assert response.status_code == 201
    assert response.json() == {"created": True}
    assert response.headers["x-request-note"] == "handled"
    # ... and it received the event API Gateway sends
    (event,) = functions.calls["HttpApiFunction"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /api/{proxy+}"
    assert event["rawPath"] == "/api/conversations/c1/messages"
    assert event["rawQueryString"] == "limit=5&limit=6"
    assert event["queryStringParameters"] == {"limit": "5,6"}
    assert event["pathParameters"] == {"proxy": "conversations/c1/messages"}
    assert event["body"] == '{"text":"hi"}'
    assert event["isBase64Encoded"] is False
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-custom-header"] == "Yes"
    assert all(name == name.lower() for name in event["headers"])
    assert event["headers"]["host"].endswith(".execute-api.us-east-1.amazonaws.com")
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/api/conversations/c1/messages"
    assert context["routeKey"] == "ANY /api/{proxy+}"
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == USER_SUB
    assert claims["email_verified"] == "true"
    assert all(isinstance(v, str) for v in claims.values())


def test_a_token_without_the_bearer_prefix_and_an_access_token_are_accepted(
    client: TestClient, functions: FakeFunctions, pool_key: SigningKey
) -> None:
    # Given an ID token sent bare, and an access token (client_id instead of aud)
    bare = {"Authorization": sign(pool_key, id_claims())}
    access = bearer(sign(pool_key, access_claims()))

    # When both call the API
    responses = [client.get("/api/status", headers=headers) for headers in (bare, access)]

    # Then both get through, as with API Gateway
    assert [r.status_code for r in responses] == [201, 201]
    assert [
        e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] for e in functions.calls["HttpApiFunction"]
    ] == [
        USER_SUB,
        USER_SUB,
    ]


def test_a_binary_body_arrives_base64_encoded(
    client: TestClient, functions: FakeFunctions, pool_key: SigningKey
) -> None:
    # Given a body that is not UTF-8
    # When it is posted
    client.put("/api/files/x", headers=bearer(sign(pool_key, id_claims())), content=b"\xff\xfe\x00")

    # Then the function receives it base64-encoded, flagged as such
    (event,) = functions.calls["HttpApiFunction"]
    assert event["isBase64Encoded"] is True
    assert event["body"] == "//4A"


def test_a_failing_function_is_a_500_without_its_error(
    client: TestClient, functions: FakeFunctions, pool_key: SigningKey
) -> None:
    # Given a function that raises
    def explode(event: dict[str, Any]) -> Any:
        raise RuntimeError("secret detail")

    functions.replies["HttpApiFunction"] = explode

    # When it is called
    response = client.get("/api/status", headers=bearer(sign(pool_key, id_claims())))

    # Then the caller gets API Gateway's 500, which does not leak the exception
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "secret" not in response.text


def test_a_cors_preflight_from_the_web_origin_is_allowed(
    client: TestClient, functions: FakeFunctions
) -> None:
    # Given the browser's preflight from the web chat's origin (no token: browsers send none)
    headers = {
        "Origin": WEB_ORIGIN,
        "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "authorization,content-type",
    }

    # When it is sent
    response = client.options("/api/conversations/c1", headers=headers)

    # Then API Gateway answers it from CorsConfiguration, without the function
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert "DELETE" in response.headers["access-control-allow-methods"]
    assert set(response.headers["access-control-allow-headers"].split(",")) == {
        "authorization",
        "content-type",
    }
    assert response.headers["access-control-max-age"] == "600"
    assert functions.calls["HttpApiFunction"] == []


def test_a_cors_preflight_from_another_origin_gets_no_allow_origin(
    client: TestClient, functions: FakeFunctions
) -> None:
    # Given a preflight from a site that is not the web chat
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"}

    # When it is sent
    response = client.options("/api/conversations/c1", headers=headers)

    # Then the browser is given no permission
    assert "access-control-allow-origin" not in response.headers
    assert functions.calls["HttpApiFunction"] == []


def test_responses_carry_cors_headers_only_for_the_web_origin(
    client: TestClient, pool_key: SigningKey
) -> None:
    # Given authorised requests from the web origin and from another one
    token = bearer(sign(pool_key, id_claims()))

    # When they are answered
    ours = client.get("/api/status", headers={**token, "Origin": WEB_ORIGIN})
    theirs = client.get("/api/status", headers={**token, "Origin": "https://evil.example"})

    # Then only the web origin may read the answer
    assert ours.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert "access-control-allow-origin" not in theirs.headers
    # A 401 to the web origin is readable too, so the web chat can send the user to log in
    denied = client.get("/api/status", headers={"Origin": WEB_ORIGIN})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == WEB_ORIGIN


@pytest.mark.parametrize("path", ["/", "/api", "/api/", "/other/thing", "/apix/y"])
def test_a_path_without_a_route_is_404(
    client: TestClient, functions: FakeFunctions, pool_key: SigningKey, path: str
) -> None:
    # Given a path no route of the template serves
    # When it is called, even with a valid token
    response = client.get(path, headers=bearer(sign(pool_key, id_claims())))

    # Then API Gateway's 404, no function
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert functions.calls["HttpApiFunction"] == []
