"""The embedded moto server: the template's resources, a user that can log in, state kept across restarts."""

from __future__ import annotations

import contextlib
import json
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from moto.backends import get_backend
from moto.core.base_backend import BackendDict
from moto.s3.models import s3_backends

from local.aws import PERSISTED_SERVICES, EmbeddedAws, StateError
from local.resolve import Resolver
from local.template import table_definitions

USERNAME = "demo@example.com"


def forget_everything() -> None:
    """What a new process starts with: moto's backends are process-global, so empty them all."""
    BackendDict.reset()
    for service in PERSISTED_SERVICES:
        get_backend(service).clear()  # type: ignore[call-overload]
    # The index of bucket names lives beside the backends; a new process starts without it too.
    s3_backends.bucket_accounts.clear()


@pytest.fixture
def fresh_moto() -> Iterator[None]:
    forget_everything()
    yield
    forget_everything()


def log_in(aws: EmbeddedAws, username: str, password: str) -> dict[str, Any]:
    """USER_PASSWORD_AUTH as the web chat does; the ID token's claims."""
    result = aws.client("cognito-idp").initiate_auth(
        ClientId=aws.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    claims: dict[str, Any] = jwt.decode(
        result["AuthenticationResult"]["IdToken"], options={"verify_signature": False}
    )
    return claims


def test_the_stack_keeps_tables_objects_and_users_across_a_restart(
    template: dict[str, Any], tmp_path: Path, fresh_moto: None
) -> None:
    # Given moto on a free loopback port with the template's resources and the demo user
    first = EmbeddedAws(tmp_path, 0)
    first.start()
    try:
        assert first.url.startswith("http://127.0.0.1:")
        first.create_resources(Resolver(template, "local"), template)
        dynamodb, s3 = first.client("dynamodb"), first.client("s3")
        expected_tables = {t.table_name("local") for t in table_definitions(template).values()}
        assert expected_tables <= set(dynamodb.list_tables()["TableNames"])
        assert s3.get_bucket_versioning(Bucket=first.bucket)["Status"] == "Enabled"
        user = first.ensure_user(USERNAME)
        claims = log_in(first, USERNAME, user.password)
        assert claims["sub"] == user.sub
        assert claims["aud"] == first.client_id
        pool_id = first.user_pool_id

        # ... and the user has written data: a conversation item and two versions of a backed-up file
        dynamodb.put_item(
            TableName="local-Conversations",
            Item={"PK": {"S": f"USER#{user.sub}"}, "SK": {"S": "CONV#1"}, "title": {"S": "hello"}},
        )
        key = f"users/{user.sub}/workspace/notes.md"
        v1 = s3.put_object(Bucket=first.bucket, Key=key, Body=b"first")["VersionId"]
        v2 = s3.put_object(Bucket=first.bucket, Key=key, Body=b"second")["VersionId"]
    finally:
        # When the stack stops (Ctrl-C) ...
        first.stop()
    # ... and starts again in a new process, on the same state directory
    forget_everything()
    second = EmbeddedAws(tmp_path, 0)
    second.start()
    try:
        second.create_resources(Resolver(template, "local"), template)
        again = second.ensure_user(USERNAME)

        # Then the item and both object versions are there, under the same version ids
        dynamodb, s3 = second.client("dynamodb"), second.client("s3")
        item = dynamodb.get_item(
            TableName="local-Conversations", Key={"PK": {"S": f"USER#{user.sub}"}, "SK": {"S": "CONV#1"}}
        )["Item"]
        assert item["title"] == {"S": "hello"}
        latest = s3.get_object(Bucket=second.bucket, Key=key)
        assert (latest["VersionId"], latest["Body"].read()) == (v2, b"second")
        assert s3.get_object(Bucket=second.bucket, Key=key, VersionId=v1)["Body"].read() == b"first"
        # ... the user pool has the same id (tokens and config.json stay valid) ...
        assert second.user_pool_id == pool_id
        # ... and the same password logs the same user in, with the same sub the data is keyed by
        assert again == user
        assert log_in(second, USERNAME, user.password)["sub"] == user.sub
    finally:
        second.stop()


def test_a_wrong_password_does_not_log_in(template: dict[str, Any], tmp_path: Path, fresh_moto: None) -> None:
    # Given the demo user
    aws = EmbeddedAws(tmp_path, 0)
    aws.start()
    try:
        aws.create_resources(Resolver(template, "local"), template)
        user = aws.ensure_user(USERNAME)

        # When someone logs in with another password
        # Then Cognito refuses
        cognito = aws.client("cognito-idp")
        with pytest.raises(cognito.exceptions.NotAuthorizedException):
            log_in(aws, USERNAME, user.password + "x")
        # ... and asking for the user again keeps the password the banner showed
        assert aws.ensure_user(USERNAME).password == user.password
    finally:
        aws.stop()


def test_a_corrupt_snapshot_stops_the_start_with_the_fix(tmp_path: Path, fresh_moto: None) -> None:
    # Given a state directory whose snapshot is damaged
    (tmp_path / "aws-state.pickle").write_bytes(b"\x80\x05 not a pickle")

    # When the stack starts on it
    aws = EmbeddedAws(tmp_path, 0)
    with pytest.raises(StateError) as refused:
        aws.start()

    # Then the error says how to start afresh, and nothing was served
    assert "make dev-reset" in str(refused.value)
    assert aws.server is None


def test_a_snapshot_from_another_version_stops_the_start_with_the_fix(
    tmp_path: Path, fresh_moto: None
) -> None:
    # Given a snapshot written by another version of the local stack
    (tmp_path / "aws-state.pickle").write_bytes(pickle.dumps({"version": 999, "services": {}}))

    # When the stack starts on it
    # Then it refuses, naming the fix
    with pytest.raises(StateError, match="make dev-reset"):
        EmbeddedAws(tmp_path, 0).start()


def test_a_damaged_user_file_is_reported_with_the_fix(tmp_path: Path) -> None:
    # Given a users file that is not what the stack wrote
    (tmp_path / "cognito-users.json").write_text(json.dumps({"users": [{"name": "x"}]}))

    # When the saved users are read
    # Then the error names the file and the fix
    with pytest.raises(StateError, match=r"cognito-users\.json.*make dev-reset"):
        EmbeddedAws(tmp_path, 0).saved_users()


def test_a_failed_transaction_never_takes_back_a_write_made_meanwhile(
    tmp_path: Path, fresh_moto: None
) -> None:
    # Given a table with rows, and a transaction that will fail its condition
    aws = EmbeddedAws(tmp_path, 0)
    aws.start()
    try:
        ddb = aws.client("dynamodb")
        ddb.create_table(
            TableName="race",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        rows = [f"row-{i}" for i in range(40)]
        for key in rows:
            ddb.put_item(TableName="race", Item={"id": {"S": key}})
        refused = [{"Put": {"TableName": "race", "Item": {"id": {"S": f"pad-{i}"}}}} for i in range(20)] + [
            {
                "ConditionCheck": {
                    "TableName": "race",
                    "Key": {"id": {"S": "absent"}},
                    "ConditionExpression": "attribute_exists(id)",
                }
            }
        ]

        def fail_transactions() -> None:
            for _ in range(40):
                with contextlib.suppress(ddb.exceptions.TransactionCanceledException):
                    aws.client("dynamodb").transact_write_items(TransactItems=refused)

        # When rows are deleted while such transactions fail, side by side (the bridge and the functions)
        with ThreadPoolExecutor(2) as pool:
            failing = pool.submit(fail_transactions)
            deleter = aws.client("dynamodb")
            for key in rows:
                deleter.delete_item(TableName="race", Key={"id": {"S": key}})
            failing.result()

        # Then every deleted row stays deleted, and nothing of the failed transactions was written
        assert ddb.scan(TableName="race")["Items"] == []
    finally:
        aws.stop()
