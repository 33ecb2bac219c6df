"""Helpers for auth tests: RSA signing keys, Cognito-shaped tokens, an in-memory and a loopback JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from serverless_openclaw.config import AuthConfig

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool"
CLIENT_ID = "test-client-id"
USER_SUB = "0c8e7a52-3f21-4a7e-9d5b-2f6f1e9b7c44"


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair as Cognito would publish it (kid + public JWK)."""

    kid: str
    private: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return data


def make_key(kid: str) -> SigningKey:
    """A fresh 2048-bit RSA signing key."""
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def id_claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a Cognito ID token valid for an hour; overrides set (or, with None, remove) claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": USER_SUB,
        "email_verified": True,
        "iss": ISSUER,
        "cognito:username": "alice",
        "origin_jti": "5d1f6c2a-7e0b-4a8e-9b3f-1c2d3e4f5a6b",
        "aud": CLIENT_ID,
        "event_id": "b2f4c7e1-8a9d-4c3b-a1e2-f3d4c5b6a7e8",
        "token_use": "id",
        "auth_time": now - 60,
        "exp": now + 3600,
        "iat": now - 60,
        "jti": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
        "email": "alice@example.com",
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def access_claims() -> dict[str, Any]:
    """Claims of a Cognito access token from the same pool: `client_id` instead of `aud`."""
    claims = id_claims(token_use="access", aud=None, email=None, scope="aws.cognito.signin.user.admin")
    claims["client_id"] = CLIENT_ID
    claims["username"] = claims.pop("cognito:username")
    return claims


def sign(key: SigningKey, claims: dict[str, Any], kid: str | None = None) -> str:
    """An RS256 JWT signed with `key`, announcing `kid` (the key's own by default)."""
    return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": kid or key.kid})


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def alg_none_token(key: SigningKey) -> str:
    """Valid ID-token claims under `alg: none` and the pool key's kid, unsigned."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_b64(id_claims())}."


def hs256_with_public_key(key: SigningKey) -> str:
    """Key confusion: an HMAC signed with the (public) PEM, hoping the server uses it as an HMAC secret.

    Built by hand because PyJWT itself refuses to HMAC with a PEM.
    """
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{_b64(id_claims())}"
    return (
        f"{signing_input}.{_b64(hmac.new(key.public_pem, signing_input.encode(), hashlib.sha256).digest())}"
    )


@dataclass
class StaticKeys:
    """A JWKS client that knows a fixed set of public keys (what PyJWKClient does, without HTTP)."""

    keys: list[SigningKey]

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self.keys:
            if key.kid == kid:
                return jwt.PyJWK(key.jwk)
        raise jwt.PyJWKClientError(f"Unable to find a signing key that matches: {kid!r}")


def auth_config(jwks_url: str = "https://example.invalid/jwks.json") -> AuthConfig:
    """The test user pool."""
    return AuthConfig(issuer=ISSUER, client_id=CLIENT_ID, jwks_url=jwks_url)


@dataclass
class JwksServer:
    """A loopback HTTP server publishing a JWKS; `failing` makes it answer 500."""

    keys: list[SigningKey]
    url: str = ""
    failing: bool = False
    requests: int = 0


@contextmanager
def serve_jwks(keys: list[SigningKey]) -> Iterator[JwksServer]:
    """Serve `keys` at http://127.0.0.1:<port>/.well-known/jwks.json for the duration of the block."""
    state = JwksServer(keys)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.failing or self.path != "/.well-known/jwks.json":
                self.send_error(500 if state.failing else 404)
                return
            body = json.dumps({"keys": [k.jwk for k in state.keys]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def pool_key() -> SigningKey:
    """The user pool's signing key (published in its JWKS)."""
    return make_key("pool-key-1")


@pytest.fixture(scope="module")
def attacker_key() -> SigningKey:
    """A key the pool never published."""
    return make_key("attacker-key")
