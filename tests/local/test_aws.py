"""The embedded moto server: the template's resources, a user that can log in, state kept across restarts."""

from __future__ import annotations

import contextlib
import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest

from local.aws import EmbeddedAws, StateError
from local.resolve import Resolver
from local.template import table_definitions
from tests.local.conftest import crash, forget_everything, started

USERNAME = "demo@example.com"


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


def test_writes_moto_acknowledged_survive_a_crash_of_the_stack(
    template: dict[str, Any], tmp_path: Path, fresh_moto: None
) -> None:
    # Given a stack that has taken its snapshot (as it does at start and every few seconds) ...
    first = started(tmp_path, template)
    user = first.ensure_user(USERNAME)
    assert first.snapshot()
    # ... and then acknowledged writes: an item, an update of it, a file in two versions, a deleted file
    dynamodb, s3 = first.client("dynamodb"), first.client("s3")
    key = {"PK": {"S": f"USER#{user.sub}"}, "SK": {"S": "CONV#1"}}
    dynamodb.put_item(TableName="local-Conversations", Item={**key, "title": {"S": "hello"}})
    dynamodb.update_item(
        TableName="local-Conversations",
        Key=key,
        UpdateExpression="SET title = :t",
        ExpressionAttributeValues={":t": {"S": "hello again"}},
    )
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "local-Conversations", "Item": {**key, "SK": {"S": "CONV#2"}}}},
        ]
    )
    dynamodb.put_item(TableName="local-Conversations", Item={**key, "SK": {"S": "CONV#4"}})
    dynamodb.batch_write_item(
        RequestItems={
            "local-Conversations": [
                {"PutRequest": {"Item": {**key, "SK": {"S": "CONV#3"}}}},
                {"DeleteRequest": {"Key": {**key, "SK": {"S": "CONV#4"}}}},
            ]
        }
    )
    notes = f"users/{user.sub}/workspace/notes.md"
    v1 = s3.put_object(Bucket=first.bucket, Key=notes, Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=first.bucket, Key=notes, Body=b"second")["VersionId"]
    gone = f"users/{user.sub}/workspace/gone.md"
    s3.put_object(Bucket=first.bucket, Key=gone, Body=b"soon deleted")
    s3.delete_objects(Bucket=first.bucket, Delete={"Objects": [{"Key": gone}]})
    dropped = s3.put_object(Bucket=first.bucket, Key=notes, Body=b"third")["VersionId"]
    s3.delete_object(Bucket=first.bucket, Key=notes, VersionId=dropped)
    # ... and a new bucket without versioning, whose object is overwritten
    s3.create_bucket(Bucket="plain")
    s3.put_object(Bucket="plain", Key="a.txt", Body=b"old")
    s3.put_object(Bucket="plain", Key="a.txt", Body=b"new")

    # When the stack is killed before its next snapshot, and starts again on the same state directory
    crash(first)
    second = EmbeddedAws(tmp_path, 0)
    second.start()
    try:
        second.create_resources(Resolver(template, "local"), template)
        dynamodb, s3 = second.client("dynamodb"), second.client("s3")

        # Then every acknowledged write is there: the item as last updated, the transaction's item, the
        # batch's new item and not the one it deleted ...
        item = dynamodb.get_item(TableName="local-Conversations", Key=key)["Item"]
        assert item["title"] == {"S": "hello again"}
        for sort_key, kept in (("CONV#2", True), ("CONV#3", True), ("CONV#4", False)):
            found = dynamodb.get_item(TableName="local-Conversations", Key={**key, "SK": {"S": sort_key}})
            assert ("Item" in found) is kept, sort_key
        # ... both versions of the file under the ids S3 gave, and the deleted file deleted
        latest = s3.get_object(Bucket=second.bucket, Key=notes)
        assert (latest["VersionId"], latest["Body"].read()) == (v2, b"second")
        assert s3.get_object(Bucket=second.bucket, Key=notes, VersionId=v1)["Body"].read() == b"first"
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=second.bucket, Key=gone)
        listed = s3.list_object_versions(Bucket=second.bucket, Prefix=notes)["Versions"]
        assert sorted(v["VersionId"] for v in listed) == sorted([v1, v2])
        # ... and the new bucket, unversioned, with the object's last content only
        assert s3.get_bucket_versioning(Bucket="plain").get("Status") is None
        plain = s3.list_object_versions(Bucket="plain")["Versions"]
        assert [(v["Key"], v["VersionId"]) for v in plain] == [("a.txt", "null")]
        assert s3.get_object(Bucket="plain", Key="a.txt")["Body"].read() == b"new"
    finally:
        second.stop()


@pytest.mark.parametrize("ending", ["restart", "crash"])
def test_a_user_other_than_the_demo_user_keeps_its_id_and_password(
    template: dict[str, Any], tmp_path: Path, fresh_moto: None, ending: str
) -> None:
    # Given a second user, created in the local Cognito as scripts would (not the demo user)
    first = started(tmp_path, template)
    first.ensure_user(USERNAME)
    assert first.snapshot()
    cognito = first.client("cognito-idp")
    cognito.admin_create_user(
        UserPoolId=first.user_pool_id,
        Username="friend@example.com",
        UserAttributes=[{"Name": "email", "Value": "friend@example.com"}],
        MessageAction="SUPPRESS",
    )
    cognito.admin_set_user_password(
        UserPoolId=first.user_pool_id, Username="friend@example.com", Password="Friend-pass-1", Permanent=True
    )
    sub = log_in(first, "friend@example.com", "Friend-pass-1")["sub"]

    # When the stack stops (Ctrl-C) or is killed, and starts again on the same state directory
    if ending == "restart":
        first.stop()
        forget_everything()
    else:
        crash(first)
    second = EmbeddedAws(tmp_path, 0)
    second.start()
    try:
        second.create_resources(Resolver(template, "local"), template)
        second.ensure_user(USERNAME)

        # Then the same password logs the user in, with the same sub their data is keyed by
        assert log_in(second, "friend@example.com", "Friend-pass-1")["sub"] == sub
    finally:
        second.stop()


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
