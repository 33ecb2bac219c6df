"""Who may open a WebSocket connection: Cognito ID tokens for browsers, a per-task token for bridges.

ID tokens are verified with PyJWT against the user pool's JWKS (RS256 only, issuer, audience,
`token_use`, expiry). The agent token is a random secret the bridge makes itself; only its sha256
reaches DynamoDB, and it is compared in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from serverless_openclaw.config import AuthConfig

MAX_TOKEN_LENGTH = 8 * 1024
"""Cognito ID tokens are 1-2 KiB; anything far larger is refused before any parsing or key fetch."""

LEEWAY_SECONDS = 30
"""Tolerated clock skew between Cognito and Lambda for `exp` and `iat`."""

JWKS_CACHE_SECONDS = 3600
"""Cognito rotates signing keys rarely; a new `kid` still triggers a refetch (after PyJWT's cooldown)."""

_ALGORITHMS = ["RS256"]
"""Cognito signs with RS256; a fixed list rules out `alg: none` and HS256 key confusion."""

_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "aud", "token_use"]


class AuthError(Exception):
    """A credential was refused; the message is a short reason safe to log (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified ID token says about the user."""

    sub: str
    email: str | None = None
    username: str | None = None


class SigningKeySource(Protocol):
    """Finds the public key a JWT was signed with (PyJWKClient, or a fake in tests)."""

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        """The key matching the token's `kid`."""
        ...


class JwtVerifier:
    """Verifies Cognito ID tokens; the JWKS client is created on first use, so importing does no I/O."""

    def __init__(self, config: AuthConfig, jwks_client: SigningKeySource | None = None) -> None:
        self.config = config
        self._jwks_client = jwks_client

    @property
    def jwks_client(self) -> SigningKeySource:
        """The signing key source, built lazily (one per process, its cache shared by invocations)."""
        if self._jwks_client is None:
            self._jwks_client = jwt.PyJWKClient(
                self.config.jwks_url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=3
            )
        return self._jwks_client

    def verify_id_token(self, token: str) -> Claims:
        """The claims of a valid Cognito ID token for our app client; AuthError for anything else."""
        _check_header(token)
        claims = self._decode(token, self._signing_key(token))
        # An access token of the same pool is signed by the same key: only `token_use` tells them apart.
        if claims.get("token_use") != "id":
            raise AuthError("not an id token")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise AuthError("invalid subject")
        return Claims(
            sub=sub, email=_optional_str(claims, "email"), username=_optional_str(claims, "cognito:username")
        )

    def _signing_key(self, token: str) -> jwt.PyJWK:
        try:
            return self.jwks_client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise AuthError("signing keys unavailable") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("unknown signing key") from None

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        """The verified claims (signature, issuer, audience, expiry, required claims); AuthError naming
        the first check that failed."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=_ALGORITHMS,
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing claim {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("invalid token") from None
        return claims


def _check_header(token: str) -> None:
    """Refuse what is plainly not one of our tokens before any key lookup, so junk never fetches the JWKS."""
    if not isinstance(token, str) or not token:
        raise AuthError("missing token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthError("token too large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError("malformed token") from None
    if header.get("alg") not in _ALGORITHMS:
        raise AuthError("algorithm not allowed")
    if not isinstance(header.get("kid"), str):
        raise AuthError("token has no key id")


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None
