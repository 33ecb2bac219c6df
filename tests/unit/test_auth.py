"""JwtVerifier against forged, stale and misdirected tokens; the agent token hash."""

from __future__ import annotations

import jwt
import pytest

from serverless_openclaw.agent_credentials import agent_token_matches, hash_agent_token
from serverless_openclaw.auth import (
    MAX_TOKEN_LENGTH,
    AuthError,
    Claims,
    JwtVerifier,
)
from tests.unit.conftest_auth import (
    USER_SUB,
    SigningKey,
    StaticKeys,
    access_claims,
    alg_none_token,
    auth_config,
    hs256_with_public_key,
    id_claims,
    make_key,
    serve_jwks,
    sign,
)


@pytest.fixture
def verifier(pool_key: SigningKey) -> JwtVerifier:
    return JwtVerifier(auth_config(), jwks_client=StaticKeys([pool_key]))


def test_valid_id_token_yields_the_users_claims(verifier: JwtVerifier, pool_key: SigningKey) -> None:
    # Given an ID token Cognito issued to our app client
    token = sign(pool_key, id_claims())

    # When it is verified
    claims = verifier.verify_id_token(token)

    # Then the user is identified by their sub
    assert claims == Claims(sub=USER_SUB, email="alice@example.com", username="alice")


def test_token_within_clock_skew_leeway_is_accepted(verifier: JwtVerifier, pool_key: SigningKey) -> None:
    # Given a token that expired a few seconds ago (Cognito's clock and ours differ slightly)
    token = sign(pool_key, id_claims(exp=id_claims()["iat"] + 55))

    # When / Then it is still accepted
    assert verifier.verify_id_token(token).sub == USER_SUB


@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [
        ("alg_none", "algorithm not allowed"),
        ("hs256_key_confusion", "algorithm not allowed"),
        ("unknown_kid", "unknown signing key"),
        ("known_kid_wrong_key", "bad signature"),
        ("expired", "token expired"),
        ("wrong_issuer", "wrong issuer"),
        ("wrong_audience", "wrong audience"),
        ("access_token", "missing claim aud"),
        ("id_claims_but_access_use", "not an id token"),
        ("missing_token_use", "missing claim token_use"),
        ("missing_iat", "missing claim iat"),
        ("missing_exp", "missing claim exp"),
        ("empty_sub", "invalid subject"),
        ("issued_in_the_future", "invalid token"),
        ("no_kid", "token has no key id"),
    ],
)
def test_forged_or_misdirected_tokens_are_refused(
    case: str, expected_reason: str, verifier: JwtVerifier, pool_key: SigningKey, attacker_key: SigningKey
) -> None:
    # Given a token that must not open a connection
    later = id_claims()["iat"] + 3600
    token = {
        "alg_none": lambda: alg_none_token(pool_key),
        "hs256_key_confusion": lambda: hs256_with_public_key(pool_key),
        "unknown_kid": lambda: sign(attacker_key, id_claims()),
        "known_kid_wrong_key": lambda: sign(attacker_key, id_claims(), kid=pool_key.kid),
        "expired": lambda: sign(pool_key, id_claims(iat=1_700_000_000, exp=1_700_003_600)),
        "wrong_issuer": lambda: sign(
            pool_key, id_claims(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other")
        ),
        "wrong_audience": lambda: sign(pool_key, id_claims(aud="another-app-client")),
        "access_token": lambda: sign(pool_key, access_claims()),
        "id_claims_but_access_use": lambda: sign(pool_key, id_claims(token_use="access")),
        "missing_token_use": lambda: sign(pool_key, id_claims(token_use=None)),
        "missing_iat": lambda: sign(pool_key, id_claims(iat=None)),
        "missing_exp": lambda: sign(pool_key, id_claims(exp=None)),
        "empty_sub": lambda: sign(pool_key, id_claims(sub="")),
        "issued_in_the_future": lambda: sign(pool_key, id_claims(iat=later, exp=later + 3600)),
        "no_kid": lambda: jwt.encode(id_claims(), pool_key.private, algorithm="RS256"),
    }[case]()

    # When it is verified
    with pytest.raises(AuthError) as refused:
        verifier.verify_id_token(token)

    # Then it is refused with a loggable reason that does not repeat the token
    assert refused.value.reason == expected_reason
    assert token not in str(refused.value)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9", "eyJhbGciOiJSUzI1NiJ9.e30.", "Bearer x.y.z"],
)
def test_garbage_is_refused(token: str, verifier: JwtVerifier) -> None:
    # Given / When / Then
    with pytest.raises(AuthError):
        verifier.verify_id_token(token)


def test_token_with_its_signature_stripped_is_refused(verifier: JwtVerifier, pool_key: SigningKey) -> None:
    # Given a genuine token whose signature was cut off
    stripped = sign(pool_key, id_claims()).rsplit(".", 1)[0] + "."

    # When / Then
    with pytest.raises(AuthError):
        verifier.verify_id_token(stripped)


def test_oversized_token_is_refused_before_any_key_lookup(pool_key: SigningKey) -> None:
    # Given a validly signed token padded past the size cap, and a key source that must not be asked
    class NoLookups:
        def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
            raise AssertionError("an oversized token reached the key lookup")

    token = sign(pool_key, id_claims(padding="x" * MAX_TOKEN_LENGTH))
    verifier = JwtVerifier(auth_config(), jwks_client=NoLookups())

    # When / Then
    with pytest.raises(AuthError, match="token too large"):
        verifier.verify_id_token(token)


def test_real_jwks_client_verifies_against_a_published_key_set(pool_key: SigningKey) -> None:
    # Given the pool's keys published over HTTP, and a verifier using PyJWKClient on that URL
    with serve_jwks([make_key("older-key"), pool_key]) as jwks:
        verifier = JwtVerifier(auth_config(jwks.url))

        # When two tokens are verified
        first = verifier.verify_id_token(sign(pool_key, id_claims()))
        second = verifier.verify_id_token(sign(pool_key, id_claims(sub="someone-else")))

    # Then both are accepted and the key set was fetched once (cached across invocations)
    assert (first.sub, second.sub) == (USER_SUB, "someone-else")
    assert jwks.requests == 1


def test_real_jwks_client_refuses_a_key_it_does_not_publish(pool_key: SigningKey) -> None:
    # Given a published key set without the attacker's key
    with serve_jwks([pool_key]) as jwks:
        verifier = JwtVerifier(auth_config(jwks.url))

        # When / Then a token under an unpublished kid is refused
        with pytest.raises(AuthError, match="unknown signing key"):
            verifier.verify_id_token(sign(make_key("rogue"), id_claims()))


def test_jwks_endpoint_failure_refuses_instead_of_crashing(pool_key: SigningKey) -> None:
    # Given a JWKS endpoint that answers 500
    with serve_jwks([pool_key]) as jwks:
        jwks.failing = True
        verifier = JwtVerifier(auth_config(jwks.url))

        # When / Then a valid token cannot be verified, which is a refusal, not an exception
        with pytest.raises(AuthError, match="signing keys unavailable"):
            verifier.verify_id_token(sign(pool_key, id_claims()))


def test_unreachable_jwks_endpoint_refuses(pool_key: SigningKey) -> None:
    # Given a JWKS URL where nothing listens any more (the server was started and stopped)
    with serve_jwks([pool_key]) as jwks:
        url = jwks.url
    verifier = JwtVerifier(auth_config(url))

    # When / Then
    with pytest.raises(AuthError, match="signing keys unavailable"):
        verifier.verify_id_token(sign(pool_key, id_claims()))


def test_building_a_verifier_does_no_network_io() -> None:
    # Given a JWKS URL that could not be reached
    verifier = JwtVerifier(auth_config("https://example.invalid/.well-known/jwks.json"))

    # When nothing is verified, Then nothing was fetched (cold start stays free of network calls)
    assert verifier._jwks_client is None


def test_agent_token_matches_only_its_own_hash() -> None:
    # Given the hash the bridge stored for its token
    stored = hash_agent_token("s3cr3t-agent-token")

    # When / Then
    assert len(stored) == 64 and stored == stored.lower()
    assert agent_token_matches("s3cr3t-agent-token", stored)
    assert not agent_token_matches("s3cr3t-agent-tokeN", stored)
    assert not agent_token_matches(stored, stored)  # presenting the hash itself is not the token


@pytest.mark.parametrize(
    ("token", "expected_hash"),
    [("", hash_agent_token("")), ("token", None), ("token", ""), (None, hash_agent_token("x")), ("x", "é")],
)
def test_agent_token_missing_or_malformed_never_matches(token: str | None, expected_hash: str | None) -> None:
    # Given / When / Then
    assert not agent_token_matches(token, expected_hash)
