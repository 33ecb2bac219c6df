"""The local Cognito front: real SRP against moto's users, proven with pycognito, an independent client."""

from __future__ import annotations

import base64
import datetime
import hmac
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pycognito.aws_srp import AWSSRP

from local.cognito import SESSION_SECONDS, claim_signature, cognito_app, is_cognito_timestamp, pad_hex
from tests.local.cognito_stand import PASSWORD, Stand, running_stand
from tests.local.servers import serve


@pytest.fixture(scope="module")
def stand(template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    with running_stand(template, tmp_path_factory.mktemp("aws")) as running:
        yield running


def error_of(excinfo: pytest.ExceptionInfo[Any]) -> tuple[str, str]:
    """(code, message) of a botocore ClientError."""
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def test_the_right_password_signs_in_with_tokens_moto_signed(stand: Stand) -> None:
    # Given a confirmed user
    email = stand.new_user()

    # When pycognito signs in with SRP through the front
    tokens = stand.srp(email, PASSWORD).authenticate_user()

    # Then the ID token verifies against moto's JWKS and names the user ...
    result = tokens["AuthenticationResult"]
    claims = stand.verified_claims(result["IdToken"])
    assert claims["email"] == email
    assert claims["token_use"] == "id"
    # ... and the refresh token works at the front too
    refreshed = stand.front().initiate_auth(
        ClientId=stand.client_id,
        AuthFlow="REFRESH_TOKEN_AUTH",
        AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]},
    )
    assert stand.verified_claims(refreshed["AuthenticationResult"]["IdToken"])["sub"] == claims["sub"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_refusal(stand: Stand) -> None:
    # Given a confirmed user
    email = stand.new_user()
    front = stand.front()

    # When someone signs in with another password, or as nobody
    with pytest.raises(front.exceptions.NotAuthorizedException) as wrong:
        stand.srp(email, PASSWORD + "x").authenticate_user()
    with pytest.raises(front.exceptions.NotAuthorizedException) as unknown:
        stand.srp("nobody@example.com", PASSWORD).authenticate_user()

    # Then both are refused with the same words
    assert (
        error_of(wrong) == error_of(unknown) == ("NotAuthorizedException", "Incorrect username or password.")
    )


def test_unconfirmed_disabled_and_reset_users_are_told_why(stand: Stand) -> None:
    # Given a user who signed up but never confirmed, a disabled user and one who must reset their password
    admin = stand.aws.client("cognito-idp")
    unconfirmed = f"{uuid.uuid4().hex[:12]}@example.com"
    admin.sign_up(ClientId=stand.client_id, Username=unconfirmed, Password=PASSWORD)
    disabled = stand.new_user()
    admin.admin_disable_user(UserPoolId=stand.pool_id, Username=disabled)
    reset = stand.new_user()
    admin.admin_reset_user_password(UserPoolId=stand.pool_id, Username=reset)
    front = stand.front()

    # When each signs in with the right password
    # Then each gets Cognito's own error
    with pytest.raises(front.exceptions.UserNotConfirmedException):
        stand.srp(unconfirmed, PASSWORD).authenticate_user()
    with pytest.raises(front.exceptions.NotAuthorizedException) as refused:
        stand.srp(disabled, PASSWORD).authenticate_user()
    assert error_of(refused)[1] == "User is disabled."
    with pytest.raises(front.exceptions.PasswordResetRequiredException):
        stand.srp(reset, PASSWORD).authenticate_user()


def test_the_app_clients_settings_decide_who_may_start_srp(stand: Stand) -> None:
    # Given a confirmed user and app clients without SRP, with only the legacy SRP flag, and with a secret
    email = stand.new_user()
    admin = stand.aws.client("cognito-idp")

    def new_client(**settings: Any) -> dict[str, Any]:
        created: dict[str, Any] = admin.create_user_pool_client(
            UserPoolId=stand.pool_id, ClientName=uuid.uuid4().hex[:12], **settings
        )["UserPoolClient"]
        return created

    no_srp = new_client(ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])
    legacy = new_client(ExplicitAuthFlows=["USER_SRP_AUTH"], PreventUserExistenceErrors="LEGACY")
    secret = new_client(GenerateSecret=True, PreventUserExistenceErrors="ENABLED")

    def start(client: dict[str, Any], username: str, **extra: str) -> tuple[int, dict[str, Any]]:
        parameters = {"USERNAME": username, "SRP_A": "5", **extra}
        body = {"ClientId": client["ClientId"], "AuthFlow": "USER_SRP_AUTH", "AuthParameters": parameters}
        reply = stand.call("InitiateAuth", body)
        return reply.status_code, reply.json()

    def secret_hash(username: str) -> str:
        message = (username + secret["ClientId"]).encode()
        return base64.b64encode(
            hmac.new(secret["ClientSecret"].encode(), message, "sha256").digest()
        ).decode()

    # When each starts SRP, Then the front answers as Cognito does
    assert start(no_srp, email) == (
        400,
        {"__type": "InvalidParameterException", "message": "USER_SRP_AUTH is not enabled for this client."},
    )
    assert start(legacy, email)[1]["ChallengeName"] == "PASSWORD_VERIFIER"
    assert start(legacy, "nobody@example.com") == (
        400,
        {"__type": "UserNotFoundException", "message": "User does not exist."},
    )
    assert start(secret, email, SECRET_HASH="forged") == (
        400,
        {
            "__type": "NotAuthorizedException",
            "message": f"Unable to verify secret hash for client {secret['ClientId']}",
        },
    )
    assert start(secret, email)[1]["__type"] == "NotAuthorizedException"
    assert start(secret, email, SECRET_HASH=secret_hash(email))[1]["ChallengeName"] == "PASSWORD_VERIFIER"
    assert start(secret, "nobody@example.com", SECRET_HASH=secret_hash("nobody@example.com")) == (
        400,
        {"__type": "NotAuthorizedException", "message": "Incorrect username or password."},
    )


def test_a_forced_password_change_signs_in_and_retires_the_old_password(stand: Stand) -> None:
    # Given a user the administrator created with a temporary password
    email = stand.new_user(permanent=False)
    front = stand.front()

    # When they sign in and choose a new password
    tokens = stand.srp(email, PASSWORD).set_new_password_challenge("Brand-new-pass-42")

    # Then they are signed in ...
    assert stand.verified_claims(tokens["AuthenticationResult"]["IdToken"])["email"] == email
    # ... the new password works and the temporary one no longer does
    assert "AuthenticationResult" in stand.srp(email, "Brand-new-pass-42").authenticate_user()
    with pytest.raises(front.exceptions.NotAuthorizedException):
        stand.srp(email, PASSWORD).authenticate_user()


def test_the_new_password_challenge_is_single_use_and_bound_to_its_user(stand: Stand) -> None:
    # Given two users with temporary passwords, the first at the NEW_PASSWORD_REQUIRED challenge
    victim = stand.new_user(permanent=False)
    email = stand.new_user(permanent=False)
    front = stand.front()
    srp = stand.srp(email, PASSWORD)
    parameters = srp.get_auth_params()
    started = front.initiate_auth(
        ClientId=stand.client_id, AuthFlow="USER_SRP_AUTH", AuthParameters=parameters
    )
    challenge = front.respond_to_auth_challenge(
        ClientId=stand.client_id,
        ChallengeName="PASSWORD_VERIFIER",
        ChallengeResponses=srp.process_challenge(started["ChallengeParameters"], parameters),
    )
    assert challenge["ChallengeName"] == "NEW_PASSWORD_REQUIRED"

    def new_password(username: str) -> Any:
        return front.respond_to_auth_challenge(
            ClientId=stand.client_id,
            ChallengeName="NEW_PASSWORD_REQUIRED",
            Session=challenge["Session"],
            ChallengeResponses={"USERNAME": username, "NEW_PASSWORD": "Hijacked-pass-42"},
        )

    # When the session is used to set another user's password, then again for its own user
    with pytest.raises(front.exceptions.NotAuthorizedException):
        new_password(victim)
    with pytest.raises(front.exceptions.NotAuthorizedException):
        new_password(started["ChallengeParameters"]["USERNAME"])

    # Then neither password changed
    with pytest.raises(front.exceptions.NotAuthorizedException):
        stand.srp(victim, "Hijacked-pass-42").authenticate_user()
    with pytest.raises(front.exceptions.NotAuthorizedException):
        stand.srp(email, "Hijacked-pass-42").authenticate_user()


def test_a_replayed_forged_or_expired_password_claim_is_refused(stand: Stand) -> None:
    # Given a user and a correct answer to a PASSWORD_VERIFIER challenge, used once
    email = stand.new_user()
    front = stand.front()

    def correct_answer() -> dict[str, str]:
        srp = stand.srp(email, PASSWORD)
        parameters = srp.get_auth_params()
        started = front.initiate_auth(
            ClientId=stand.client_id, AuthFlow="USER_SRP_AUTH", AuthParameters=parameters
        )
        answer: dict[str, str] = srp.process_challenge(started["ChallengeParameters"], parameters)
        return answer

    def respond(answer: dict[str, str]) -> Any:
        return front.respond_to_auth_challenge(
            ClientId=stand.client_id, ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=answer
        )

    answer = correct_answer()
    assert "AuthenticationResult" in respond(answer)

    # When the same answer is replayed, a made-up secret block is signed, or an answer comes too late
    with pytest.raises(front.exceptions.NotAuthorizedException):
        respond(answer)
    forged = {**correct_answer(), "PASSWORD_CLAIM_SECRET_BLOCK": base64.b64encode(b"forged" * 8).decode()}
    with pytest.raises(front.exceptions.NotAuthorizedException):
        respond(forged)
    late = correct_answer()
    stand.clock[0] += SESSION_SECONDS + 1
    with pytest.raises(front.exceptions.NotAuthorizedException) as expired:
        respond(late)

    # Then each is refused; a late one is told its session expired
    assert "session is expired" in error_of(expired)[1]


def test_a_signature_over_another_timestamp_or_a_malformed_timestamp_is_refused(stand: Stand) -> None:
    # Given correct answers to two challenges
    email = stand.new_user()
    front = stand.front()
    srp = stand.srp(email, PASSWORD)
    parameters = srp.get_auth_params()

    def answer() -> dict[str, str]:
        started = front.initiate_auth(
            ClientId=stand.client_id, AuthFlow="USER_SRP_AUTH", AuthParameters=parameters
        )
        result: dict[str, str] = srp.process_challenge(started["ChallengeParameters"], parameters)
        return result

    # When one claims another time than it signed, and the other zero-pads the day
    moved = {**answer(), "TIMESTAMP": "Sun Nov 1 09:05:01 UTC 2026"}
    padded = {**answer(), "TIMESTAMP": "Mon Nov 02 09:05:01 UTC 2026"}

    # Then both are refused
    with pytest.raises(front.exceptions.NotAuthorizedException):
        front.respond_to_auth_challenge(
            ClientId=stand.client_id, ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=moved
        )
    with pytest.raises(front.exceptions.InvalidParameterException):
        front.respond_to_auth_challenge(
            ClientId=stand.client_id, ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=padded
        )


def test_revoke_token_ends_the_refresh_token(stand: Stand) -> None:
    # Given a signed-in user
    email = stand.new_user()
    refresh = stand.srp(email, PASSWORD).authenticate_user()["AuthenticationResult"]["RefreshToken"]
    front = stand.front()

    # When the web chat signs out
    reply = stand.call("RevokeToken", {"Token": refresh, "ClientId": stand.client_id})

    # Then the refresh token no longer refreshes
    assert (reply.status_code, reply.json()) == (200, {})
    with pytest.raises(front.exceptions.NotAuthorizedException):
        front.initiate_auth(
            ClientId=stand.client_id, AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": refresh}
        )


def test_global_sign_out_is_answered_by_moto(stand: Stand) -> None:
    # Given a signed-in user
    email = stand.new_user()
    result = stand.srp(email, PASSWORD).authenticate_user()["AuthenticationResult"]
    front = stand.front()

    # When they sign out everywhere
    front.global_sign_out(AccessToken=result["AccessToken"])

    # Then their refresh token is refused
    with pytest.raises(front.exceptions.NotAuthorizedException):
        front.initiate_auth(
            ClientId=stand.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]},
        )


@pytest.mark.parametrize(
    ("target", "body", "expected"),
    [
        ("InitiateAuth", "{not json", "SerializationException"),
        ("InitiateAuth", "[1, 2]", "SerializationException"),
        ("InitiateAuth", "{}", "InvalidParameterException"),
        ("InitiateAuth", '{"ClientId": "CLIENT", "AuthFlow": "USER_SRP_AUTH"}', "InvalidParameterException"),
        (
            "InitiateAuth",
            '{"ClientId": "CLIENT", "AuthFlow": "USER_SRP_AUTH", "AuthParameters": {"USERNAME": 1}}',
            "InvalidParameterException",
        ),
        (
            "InitiateAuth",
            '{"ClientId": "nope", "AuthFlow": "USER_SRP_AUTH",'
            ' "AuthParameters": {"USERNAME": "a", "SRP_A": "a"}}',
            "ResourceNotFoundException",
        ),
        (
            "InitiateAuth",
            '{"ClientId": "CLIENT", "AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {}}',
            "InvalidParameterException",
        ),
        (
            "InitiateAuth",
            '{"ClientId": "CLIENT", "AuthFlow": "REFRESH_TOKEN_AUTH", "AuthParameters": {}}',
            "InvalidParameterException",
        ),
        (
            "InitiateAuth",
            '{"ClientId": "CLIENT", "AuthFlow": "REFRESH_TOKEN_AUTH",'
            ' "AuthParameters": {"REFRESH_TOKEN": "x"}}',
            "NotAuthorizedException",
        ),
        (
            "InitiateAuth",
            '{"ClientId": "CLIENT", "AuthFlow": "USER_SRP_AUTH",'
            ' "AuthParameters": {"USERNAME": "a", "SRP_A": "zz"}}',
            "InvalidParameterException",
        ),
        (
            "InitiateAuth",
            '{"ClientId": "CLIENT", "AuthFlow": "USER_SRP_AUTH",'
            ' "AuthParameters": {"USERNAME": "a", "SRP_A": "0"}}',
            "InvalidParameterException",
        ),
        ("RespondToAuthChallenge", '{"ClientId": "CLIENT", "ChallengeName": "PASSWORD_VERIFIER"}', None),
        (
            "RespondToAuthChallenge",
            '{"ClientId": "CLIENT", "ChallengeName": "PASSWORD_VERIFIER", "ChallengeResponses": {}}',
            "InvalidParameterException",
        ),
        (
            "RespondToAuthChallenge",
            '{"ClientId": "CLIENT", "ChallengeName": "SMS_MFA", "ChallengeResponses": {}}',
            "InvalidParameterException",
        ),
        (
            "RespondToAuthChallenge",
            '{"ClientId": "CLIENT", "ChallengeName": "NEW_PASSWORD_REQUIRED", "ChallengeResponses": {}}',
            "InvalidParameterException",
        ),
        (
            "RespondToAuthChallenge",
            '{"ClientId": "CLIENT", "ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": "made-up",'
            ' "ChallengeResponses": {"USERNAME": "a", "NEW_PASSWORD": "Whatever-pass-42"}}',
            "NotAuthorizedException",
        ),
        ("RevokeToken", "{}", "InvalidParameterException"),
        ("RevokeToken", '{"ClientId": "CLIENT", "Token": "unknown"}', None),
        ("GlobalSignOut", '{"AccessToken": 5}', "InvalidParameterException"),
        ("GlobalSignOut", '{"AccessToken": "forged"}', "NotAuthorizedException"),
        ("AdminSetUserPassword", "{}", "UnsupportedOperationException"),
        ("SignUp", "{}", "UnsupportedOperationException"),
    ],
)
def test_malformed_or_unsupported_requests_get_cognito_shaped_errors(
    stand: Stand, target: str, body: str, expected: str | None
) -> None:
    # Given a request that is not valid JSON, lacks a field, or asks for something the front does not serve
    content = body.replace("CLIENT", stand.client_id).encode()

    # When it reaches the front
    reply = stand.call(target, None, raw=content)

    # Then Cognito's error shape comes back (a harmless unknown token is simply accepted), never a 500
    if expected is None and reply.status_code == 200:
        assert reply.json() == {}
        return
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/x-amz-json-1.1"
    error = reply.json()
    assert set(error) == {"__type", "message"}
    if expected is not None:
        assert error["__type"] == expected


def test_a_request_without_a_target_or_with_moto_down_gets_a_cognito_shaped_error() -> None:
    # Given the front with no moto behind it
    with serve(cognito_app("http://127.0.0.1:9")) as front:
        # When a request has no X-Amz-Target, or must be forwarded to moto
        missing = httpx.post(f"{front.url}/", content=b"{}")
        down = httpx.post(
            f"{front.url}/",
            content=b'{"AccessToken": "x"}',
            headers={"X-Amz-Target": "AWSCognitoIdentityProviderService.GlobalSignOut"},
        )

    # Then both are Cognito-shaped errors
    assert (missing.status_code, missing.json()["__type"]) == (400, "UnsupportedOperationException")
    assert (down.status_code, down.json()["__type"]) == (500, "InternalErrorException")


def test_the_srp_helpers_follow_aws_padding_and_timestamp_rules() -> None:
    # Given values whose hex starts with a high nibble, an odd length, or neither
    # When they are padded
    # Then they follow amazon-cognito-identity-js's padHex
    assert pad_hex(0x8F) == "008f"
    assert pad_hex(0xABC) == "0abc"
    assert pad_hex(0x1234) == "1234"
    # ... timestamps must not zero-pad the day, and must name a real date
    assert is_cognito_timestamp(
        AWSSRP.get_cognito_formatted_timestamp(datetime.datetime(2026, 11, 2, 9, 5, 1))
    )
    assert is_cognito_timestamp("Sun Nov 2 09:05:01 UTC 2026")
    assert not is_cognito_timestamp("Sun Nov 02 09:05:01 UTC 2026")
    assert not is_cognito_timestamp("Sun Feb 30 09:05:01 UTC 2026")
    # ... and the signature is pycognito's HMAC over poolName, user id, secret block and timestamp
    assert len(claim_signature(b"k" * 16, "pool", "user", b"block", "Sun Nov 2 09:05:01 UTC 2026")) == 32
