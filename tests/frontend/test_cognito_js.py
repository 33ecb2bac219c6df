"""The web chat's sign-in client (frontend/assets/app/cognito.js) under Node, against the local front."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pycognito.aws_srp import AWSSRP

from local.cognito import N, claim_signature, password_key, password_verifier, server_public
from tests.frontend import node_driver
from tests.local.cognito_stand import PASSWORD, Stand, running_stand

DRIVER = Path(__file__).with_name("cognito_driver.mjs")
KEYS = [
    "openclaw.auth.accessToken",
    "openclaw.auth.expiresAt",
    "openclaw.auth.idToken",
    "openclaw.auth.refreshToken",
]


def drive(scenario: str, arguments: dict[str, Any]) -> Any:
    """Run one scenario of the Node driver and return what it printed."""
    return node_driver.drive(DRIVER, scenario, json.dumps(arguments))


@pytest.fixture(scope="module")
def stand(template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    with running_stand(template, tmp_path_factory.mktemp("aws")) as running:
        yield running


def site(stand: Stand, username: str, password: str = PASSWORD, **more: str) -> dict[str, str]:
    """What the page's config.json gives the client, plus the user's credentials."""
    return {
        "endpoint": stand.endpoint,
        "userPoolId": stand.pool_id,
        "clientId": stand.client_id,
        "username": username,
        "password": password,
        **more,
    }


def test_sign_in_stores_tokens_and_names_the_user(stand: Stand) -> None:
    # Given a confirmed user
    email = stand.new_user()

    # When the web chat signs them in
    seen = drive("signIn", site(stand, email))

    # Then they are signed in with a real ID token, kept under openclaw.auth.* ...
    assert seen["result"] == {"status": "signedIn"}
    assert seen["signedIn"] is True
    assert seen["storageKeys"] == KEYS
    claims = stand.verified_claims(seen["idToken"])
    # ... the page can show who they are, and listeners heard about it
    assert seen["user"] == {"username": claims["cognito:username"], "sub": claims["sub"], "email": email}
    assert [change["signedIn"] for change in seen["changes"]] == [True]


@pytest.mark.parametrize(
    ("who", "code"),
    [("wrong password", "NotAuthorized"), ("unknown", "NotAuthorized"), ("unconfirmed", "UserNotConfirmed")],
)
def test_a_refused_sign_in_says_why_and_stores_nothing(stand: Stand, who: str, code: str) -> None:
    # Given a user who cannot sign in
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    password = PASSWORD
    if who == "wrong password":
        email, password = stand.new_user(), PASSWORD + "!"
    elif who == "unconfirmed":
        stand.aws.client("cognito-idp").sign_up(ClientId=stand.client_id, Username=email, Password=PASSWORD)

    # When the web chat tries to sign them in
    seen = drive("signIn", site(stand, email, password))

    # Then it gets an AuthError with a code and a sentence, and keeps no token
    error = seen["result"]["error"]
    assert error["isAuthError"] is True
    assert error["code"] == code
    assert error["message"].endswith(".")
    assert (seen["signedIn"], seen["user"], seen["storageKeys"]) == (False, None, [])


def test_a_temporary_password_must_be_replaced_before_signing_in(stand: Stand) -> None:
    # Given a user the administrator created with a temporary password
    email = stand.new_user(permanent=False)

    # When they sign in, first choose a password the policy refuses, then a good one
    seen = drive("forcedChange", site(stand, email, newPassword="Chosen-by-me-42"))

    # Then they are asked for a new password, told the weak one is not allowed, then signed in ...
    assert seen["first"] == "newPasswordRequired"
    assert seen["weak"]["code"] == "InvalidPassword"
    assert seen["strong"] == {"status": "signedIn"}
    assert seen["user"]["email"] == email
    # ... and from then on only the new password works
    assert seen["oldAgain"]["code"] == "NotAuthorized"
    assert seen["newAgain"] == {"status": "signedIn"}


def test_the_id_token_is_refreshed_once_shortly_before_it_expires(stand: Stand) -> None:
    # Given a signed-in user whose ID token expires in four minutes (the client's clock moved on)
    email = stand.new_user()

    # When three callers ask for the ID token at once
    seen = drive("refresh", site(stand, email))

    # Then no refresh happened while the token was fresh, and one refresh serves all three
    assert seen["sameWhileFresh"] is True
    assert seen["freshCalls"] == 0
    assert seen["refreshCalls"] == 1
    assert seen["allEqual"] is True
    assert seen["changed"] is True
    assert seen["reusedAfterRefresh"] is True
    assert seen["changes"] == 2
    assert stand.verified_claims(seen["newToken"])["email"] == email


def test_a_revoked_refresh_token_ends_the_session(stand: Stand) -> None:
    # Given a signed-in user whose refresh token was revoked elsewhere
    email = stand.new_user()

    # When the client needs a fresh ID token
    seen = drive("refreshRefused", site(stand, email))

    # Then it says the session expired and forgets every token
    assert seen["revoked"] == 200
    assert seen["result"]["error"]["code"] == "SessionExpired"
    assert (seen["signedIn"], seen["storageKeys"]) == (False, [])
    assert seen["seen"] == [True, False]


def test_offline_the_current_token_serves_until_it_expires(stand: Stand) -> None:
    # Given a signed-in user who goes offline
    email = stand.new_user()

    # When the token is due for refresh, and later when it has expired
    seen = drive("offlineRefresh", site(stand, email))

    # Then the still-valid token is used, and then a network error is reported (the session is kept)
    assert seen["servedCurrentToken"] is True
    assert seen["afterExpiry"]["code"] == "Network"
    assert seen["signedIn"] is True


def test_sign_out_revokes_and_forgets_even_offline(stand: Stand) -> None:
    # Given a signed-in user
    email = stand.new_user()

    # When they sign out (online, and in another session offline)
    seen = drive("signOut", site(stand, email))

    # Then storage is empty, the refresh token is revoked at Cognito, and idToken() asks to sign in
    assert (seen["storageKeys"], seen["signedIn"], seen["user"]) == ([], False, None)
    assert seen["seen"] == [True, False]
    assert seen["refreshAfter"] == "NotAuthorizedException"
    assert seen["idTokenAfter"]["code"] == "SessionExpired"
    # ... and offline the tokens are forgotten all the same
    assert (seen["offlineStorageKeys"], seen["offlineSignedIn"]) == ([], False)


def test_another_tab_signing_in_or_out_is_noticed(stand: Stand) -> None:
    # Given two tabs sharing storage, the first listening for changes
    email = stand.new_user()

    # When the second signs in and out (with unrelated storage events in between)
    seen = drive("crossTab", site(stand, email))

    # Then the first heard exactly the sign-in and the sign-out
    assert seen["seen"] == [True, False]
    assert seen["signedInHere"] is False


def test_throttling_network_and_server_failures_become_clear_errors(stand: Stand) -> None:
    # Given Cognito answers (or fails) in each way the web chat must explain
    # When a sign-in meets each
    seen = drive("faults", site(stand, "someone@example.com"))

    # Then each becomes an AuthError with the right code
    codes = {name: error["code"] for name, error in seen.items()}
    assert codes == {
        "offline": "Network",
        "throttled": "TooManyRequests",
        "limited": "TooManyRequests",
        "tooMany": "TooManyRequests",
        "reset": "PasswordResetRequired",
        "unconfirmed": "UserNotConfirmed",
        "disabled": "NotAuthorized",
        "broken": "Unknown",
    }
    assert "disabled" in seen["disabled"]["message"]


def _b_with(hex_test: Any, verifier: int) -> tuple[int, int]:
    """The first server secret b (from a fixed sequence) whose B's hex passes `hex_test`."""
    for seed in range(1000):
        b = int.from_bytes(hashlib.sha256(f"b{seed}".encode()).digest() * 4, "big") % N
        big_b = server_public(verifier, b)
        if hex_test(f"{big_b:x}"):
            return b, big_b
    raise AssertionError("no b found")


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda h: h[0] in "89abcdef" and len(h) % 2 == 0, id="B with the top bit set"),
        pytest.param(lambda h: len(h) % 2 == 1, id="B of odd hex length"),
        pytest.param(lambda h: h[0] in "1234567" and len(h) % 2 == 0, id="B needing no padding"),
    ],
)
def test_srp_js_computes_what_pycognito_and_the_server_compute(shape: Any) -> None:
    # Given fixed secrets on both sides and a server B of the given shape
    pool_id, user_id, password = "us-east-1_AbCdEf", "3f0c9a1e-user", "Päss-wörd-42"
    pool_name = pool_id.split("_")[1]
    a = int.from_bytes(hashlib.sha256(b"a").digest() * 4, "big") % N
    big_a = pow(2, a, N)
    salt = 0x1A2B3C4D5E6F708192A3B4C5D6E7F801
    verifier = password_verifier(pool_name, user_id, password, salt)
    b, big_b = _b_with(shape, verifier)
    secret_block = "c2VjcmV0LWJsb2NrLWJ5dGVz"
    timestamp = "Mon Nov 2 09:05:01 UTC 2026"

    # When srp.js, pycognito and the local front each derive the key and sign
    js = drive(
        "vector",
        {
            "poolName": pool_name,
            "userIdForSrp": user_id,
            "password": password,
            "a": f"{a:x}",
            "A": f"{big_a:x}",
            "salt": f"{salt:x}",
            "B": f"{big_b:x}",
            "secretBlock": secret_block,
            "timestamp": timestamp,
        },
    )
    pycognito = AWSSRP(user_id, password, pool_id, "client", client=boto3.client("cognito-idp"))
    pycognito.small_a_value, pycognito.large_a_value = a, big_a
    their_key = bytes(pycognito.get_password_authentication_key(user_id, password, big_b, f"{salt:x}"))
    our_key = password_key(big_a, big_b, b, verifier)

    # Then all three agree on the key and the signature
    assert js["key"] == their_key.hex() == our_key.hex()
    message = pool_name.encode() + user_id.encode() + b"secret-block-bytes" + timestamp.encode()
    their_signature = hmac.new(their_key, message, hashlib.sha256).digest()
    ours = claim_signature(our_key, pool_name, user_id, b"secret-block-bytes", timestamp)
    assert js["signature"] == b64encode(their_signature).decode() == b64encode(ours).decode()
