"""scripts/users.py: accounts of a stack's user pool, each new password shown once and nowhere else.

Cognito and CloudFormation are moto in-process (the `aws` fixture); the pool is made with the template's own
properties, so the generated passwords meet the policy template.yaml sets.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from scripts import users as script
from tests.conftest import load_template

STACK = "users-test"
OWNER = "owner@example.com"
PASSWORD_LINE = re.compile(r"temporary password: (\S+)")


def template_pool_properties() -> dict[str, Any]:
    """The UserPool's properties from template.yaml that moto understands (the password policy among them)."""
    properties = dict(load_template()["Resources"]["UserPool"]["Properties"])  # type: ignore[index]
    policy = properties["Policies"]["PasswordPolicy"]
    return {
        "PoolName": "users-test-users",
        "UsernameAttributes": properties["UsernameAttributes"],
        "AutoVerifiedAttributes": properties["AutoVerifiedAttributes"],
        "UsernameConfiguration": properties["UsernameConfiguration"],
        "Policies": {"PasswordPolicy": policy},
    }


def create_pool() -> tuple[str, str]:
    """A user pool like the template's, with a client that allows password sign-in: (pool id, client id)."""
    cognito = boto3.client("cognito-idp")
    pool_id = cognito.create_user_pool(**template_pool_properties())["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="web", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    return pool_id, client_id


def create_stack(outputs: dict[str, str]) -> None:
    body: dict[str, Any] = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(body))


@pytest.fixture
def pool(aws: dict[str, str]) -> tuple[str, str]:
    """A deployed stack whose UserPoolId output names a pool like the template's: (pool id, client id)."""
    pool_id, client_id = create_pool()
    create_stack({"UserPoolId": pool_id, "WebUrl": "https://d111.cloudfront.net"})
    return pool_id, client_id


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = script.main(["--stack", STACK, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def sign_in(client_id: str, email: str, password: str) -> str:
    """What Cognito answers to a password sign-in: the challenge name, or 'signed-in'."""
    answer = boto3.client("cognito-idp").initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )
    return str(answer.get("ChallengeName") or "signed-in")


def meets_template_policy(password: str) -> bool:
    policy = load_template()["Resources"]["UserPool"]["Properties"]["Policies"]["PasswordPolicy"]  # type: ignore[index]
    return (
        len(password) >= policy["MinimumLength"]
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
        and any(c.isdigit() for c in password)
        and any(c in script.SYMBOLS for c in password)
    )


# ----------------------------------------------------------------------------------------------------- add


def test_add_creates_the_user_and_shows_a_temporary_password_that_signs_in_once(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    _, client_id = pool
    caplog.set_level(logging.INFO)  # what a script run shows (botocore's DEBUG echoes every request)

    # When the admin adds the owner
    code, out, err = run(capsys, "add", OWNER)

    # Then the password is printed once, meets the template's policy, and must be changed at sign-in
    assert code == 0, err
    passwords = PASSWORD_LINE.findall(out)
    assert len(passwords) == 1
    password = passwords[0]
    assert out.count(password) == 1
    assert meets_template_policy(password)
    assert "https://d111.cloudfront.net" in out
    assert sign_in(client_id, OWNER, password) == "NEW_PASSWORD_REQUIRED"
    # And it reached no log record
    assert all(password not in record.getMessage() for record in caplog.records)


def test_adding_an_existing_user_is_a_usage_error_that_leaves_the_password_alone(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, client_id = pool
    # Given an owner added once
    _, out, _ = run(capsys, "add", OWNER)
    first = PASSWORD_LINE.findall(out)[0]

    # When the admin adds the same address again, in other letters' case
    code, out, err = run(capsys, "add", OWNER.upper())

    # Then it is refused with what to do instead (the pool ignores case), and the first password still works
    assert code == 2
    assert "already has an account" in err and "reset-password" in err
    assert not PASSWORD_LINE.search(out)
    assert sign_in(client_id, OWNER, first) == "NEW_PASSWORD_REQUIRED"


def test_a_malformed_address_is_refused_before_cognito_is_asked(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "add", "not-an-address")
    assert code == 2 and "not an e-mail address" in err
    assert boto3.client("cognito-idp").list_users(UserPoolId=pool[0])["Users"] == []


# ---------------------------------------------------------------------------------------------- list/remove


def test_list_shows_every_user_with_their_status(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two users
    run(capsys, "add", OWNER)
    run(capsys, "add", "friend@example.com")

    # When listed
    code, out, _ = run(capsys, "list")

    # Then both appear, in order, waiting for their first password change
    assert code == 0
    assert "2 user(s)" in out
    lines = [line for line in out.splitlines() if "@example.com" in line]
    assert [line.split()[0] for line in lines] == ["friend@example.com", OWNER]
    assert all("FORCE_CHANGE_PASSWORD" in line for line in lines)


def test_remove_deletes_the_login_and_a_second_remove_says_there_is_none(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "add", OWNER)

    code, out, _ = run(capsys, "remove", OWNER, "--yes")
    assert code == 0 and "kept" in out
    assert boto3.client("cognito-idp").list_users(UserPoolId=pool[0])["Users"] == []

    code, _, err = run(capsys, "remove", OWNER, "--yes")
    assert code == 2 and f"no account for {OWNER}" in err


def test_remove_without_a_terminal_needs_yes(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a user, and no terminal to confirm on (pytest's stdin is not a tty)
    run(capsys, "add", OWNER)

    # When removed without --yes
    code, _, err = run(capsys, "remove", OWNER)

    # Then nothing is removed
    assert code == 2 and "--yes" in err
    assert len(boto3.client("cognito-idp").list_users(UserPoolId=pool[0])["Users"]) == 1


def test_a_removal_typed_wrong_at_the_terminal_removes_nothing() -> None:
    with pytest.raises(script.UsageError, match="did not match"):
        script.confirm_removal(OWNER, yes=False, interactive=True, ask=lambda _: "other@example.com")
    script.confirm_removal(OWNER, yes=False, interactive=True, ask=lambda _: f" {OWNER.upper()} ")


# ------------------------------------------------------------------------------------------ reset-password


def test_reset_password_replaces_the_old_one(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, client_id = pool
    _, out, _ = run(capsys, "add", OWNER)
    old = PASSWORD_LINE.findall(out)[0]

    # When the password is reset
    code, out, err = run(capsys, "reset-password", OWNER)

    # Then a new one is shown once, it signs in, and the old one no longer does
    assert code == 0, err
    new = PASSWORD_LINE.findall(out)[0]
    assert new != old and meets_template_policy(new)
    assert sign_in(client_id, OWNER, new) == "NEW_PASSWORD_REQUIRED"
    with pytest.raises(ClientError, match="NotAuthorized"):
        sign_in(client_id, OWNER, old)


def test_reset_password_of_an_unknown_user_is_a_usage_error(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "reset-password", "nobody@example.com")
    assert code == 2 and "no account for nobody@example.com" in err
    assert not PASSWORD_LINE.search(out)


# -------------------------------------------------------------------------------------------- missing things


def test_a_stack_without_its_pool_says_so(aws: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # Given a stack whose output names a pool that was deleted
    create_stack({"UserPoolId": "us-east-1_Gone00000"})

    code, _, err = run(capsys, "add", OWNER)

    assert code == 2
    assert "user pool us-east-1_Gone00000 does not exist" in err


def test_a_missing_stack_or_output_is_a_usage_error(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "list")
    assert code == 2 and STACK in err

    create_stack({"WebUrl": "https://d111.cloudfront.net"})
    code, _, err = run(capsys, "list")
    assert code == 2 and "no UserPoolId output" in err


def test_a_failure_that_quotes_the_password_does_not_print_it(
    pool: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Cognito refusing the create with a message that quotes the request (as validation errors do)
    original = boto3.session.Session.client
    sent: list[str] = []

    def client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        created = original(self, service, *args, **kwargs)
        if service == "cognito-idp":

            def refuse(**request: Any) -> Any:
                sent.append(request["TemporaryPassword"])
                error = {
                    "Code": "InvalidParameterException",
                    "Message": f"bad value {request['TemporaryPassword']}",
                }
                raise ClientError({"Error": error}, "AdminCreateUser")

            created.admin_create_user = refuse
        return created

    monkeypatch.setattr(boto3.session.Session, "client", client)

    # When the admin adds a user
    code, out, err = run(capsys, "add", OWNER)

    # Then the failure is reported without the generated password
    assert code == 1 and "InvalidParameterException" in err
    assert sent and sent[0] not in out + err


def test_no_option_takes_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--stack", STACK, "add", OWNER, "--password", "Secret-123456"])
    _, err = capsys.readouterr()
    assert "unrecognized arguments" in err


# ------------------------------------------------------------------------------------------ for the deploy


def test_ensure_owner_creates_once_then_leaves_the_account_alone(aws: dict[str, str]) -> None:
    # Given a pool like the template's
    pool_id, client_id = create_pool()
    cognito = boto3.client("cognito-idp")

    # When the deploy ensures its owner twice
    first = script.ensure_owner(cognito, pool_id, OWNER)
    second = script.ensure_owner(cognito, pool_id, OWNER)

    # Then the first run returns a working temporary password and the second creates nothing
    assert first is not None and meets_template_policy(first)
    assert second is None
    assert sign_in(client_id, OWNER, first) == "NEW_PASSWORD_REQUIRED"
    assert len(cognito.list_users(UserPoolId=pool_id)["Users"]) == 1


def test_ensure_owner_of_a_missing_pool_is_a_usage_error(aws: dict[str, str]) -> None:
    with pytest.raises(script.UsageError, match="does not exist"):
        script.ensure_owner(boto3.client("cognito-idp"), "us-east-1_Gone00000", OWNER)


def test_generated_passwords_differ_and_grow_with_the_policy() -> None:
    passwords = {script.temporary_password(12) for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == script.PASSWORD_LENGTH for p in passwords)
    assert len(script.temporary_password(40)) == 40


# ------------------------------------------------------------------------------------------- local stack


def test_the_local_stack_is_found_through_its_endpoints_file(
    aws: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the local stack's endpoints.json naming its pool
    pool_id, client_id = create_pool()
    path = tmp_path / "endpoints.json"
    endpoint = "http://127.0.0.1:59999"
    path.write_text(json.dumps({"stackName": "local-dev", "awsEndpoint": endpoint, "userPoolId": pool_id}))
    asked: list[tuple[str, str | None]] = []
    original = boto3.session.Session.client

    def client(self: Any, service: str, *args: Any, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        asked.append((service, endpoint_url))  # moto intercepts AWS-shaped URLs only: build without it
        return original(self, service, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", client)

    # When a user is added through it
    code = script.main(["--endpoints", str(path), "add", OWNER])
    out, err = capsys.readouterr()

    # Then the local pool got the user, through the local endpoint
    assert code == 0, err
    assert asked == [("cognito-idp", endpoint)]
    assert sign_in(client_id, OWNER, PASSWORD_LINE.findall(out)[0]) == "NEW_PASSWORD_REQUIRED"


def test_an_endpoints_file_without_a_pool_is_a_usage_error(
    aws: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"stackName": "local-dev", "awsEndpoint": "http://127.0.0.1:59999"}))
    code = script.main(["--endpoints", str(path), "list"])
    _, err = capsys.readouterr()
    assert code == 2 and "userPoolId" in err
