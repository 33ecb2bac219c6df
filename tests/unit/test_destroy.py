"""scripts/destroy.py: the stack goes, what template.yaml retains stays unless --purge (after the name).

Everything is moto in-process (the `aws` fixture, whose tables are template.yaml's for a stack named
`test`). moto's CloudFormation cannot create a Cognito pool, so the pool is made beside the stack, named
as the template names it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from scripts import destroy as script

STACK = "test"
TABLES = [
    f"test-{name}"
    for name in ("TaskState", "Connections", "Inbox", "Conversations", "Settings", "Idempotency")
]


def account() -> script.Account:
    """The script's own clients (moto answers them)."""
    return script.connect("us-east-1")


def resources(stack: str) -> dict[str, str]:
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in boto3.client("cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
    }


@pytest.fixture
def deployed(aws: dict[str, str]) -> Iterator[dict[str, str]]:
    """A stack `test` with its web and data buckets (some files in each), its tables, user pool, secrets and
    image stack: {what: its physical name}."""
    cloudformation = boto3.client("cloudformation")
    body = {
        "Resources": {
            "WebBucket": {"Type": "AWS::S3::Bucket"},
            "DataBucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Retain",
                "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
            },
            "AlarmTopic": {"Type": "AWS::SNS::Topic"},
        },
        "Outputs": {"WebBucketName": {"Value": {"Ref": "WebBucket"}}},
    }
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(body))
    images = {
        "Resources": {
            "BridgeRepository": {
                "Type": "AWS::ECR::Repository",
                "Properties": {"RepositoryName": "test-bridge"},
            }
        }
    }
    cloudformation.create_stack(StackName="test-images", TemplateBody=json.dumps(images))
    found = resources(STACK)
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket=found["WebBucket"], VersioningConfiguration={"Status": "Enabled"})
    for key in ("index.html", "config.json", "assets/a1/app.js"):
        s3.put_object(Bucket=found["WebBucket"], Key=key, Body=b"v1")
    s3.put_object(Bucket=found["WebBucket"], Key="index.html", Body=b"v2")  # a second version
    s3.put_object(Bucket=found["DataBucket"], Key="users/u1/workspace/notes.md", Body=b"keep me")
    cognito = boto3.client("cognito-idp")
    pool = cognito.create_user_pool(PoolName="test-users", DeletionProtection="ACTIVE")["UserPool"]["Id"]
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/test/secrets/anthropic-api-key", Value="sk-ant-x", Type="SecureString")
    ssm.put_parameter(Name="/test/secrets/telegram-bot-token", Value="1:abc", Type="SecureString")
    ecr = boto3.client("ecr")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {},
            "layers": [],
        }
    )
    ecr.put_image(repositoryName="test-bridge", imageManifest=manifest, imageTag="abc123")
    yield {"web": found["WebBucket"], "data": found["DataBucket"], "pool": pool}


def run(
    args: list[str], *, interactive: bool = False, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The script's run() against moto: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()

    def work() -> None:
        script.run(script.parse_args(args), account(), out, interactive=interactive, env=env or {})

    with contextlib.redirect_stderr(err):
        code = script.exit_code(work)
    return code, out.getvalue(), err.getvalue()


def stack_exists(name: str) -> bool:
    return script.stack_id(boto3.client("cloudformation"), name) is not None


def bucket_exists(name: str) -> bool:
    return name in {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}


def pools() -> list[str]:
    return [p["Name"] for p in boto3.client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]]


def test_destroy_empties_the_web_bucket_deletes_the_stack_and_lists_what_it_kept(
    deployed: dict[str, str],
) -> None:
    # When the stack is destroyed without --purge
    code, out, err = run(["--stack", STACK])

    # Then the stack and its web bucket (every version) are gone, with progress shown
    assert code == 0, err
    assert not stack_exists(STACK)
    assert not bucket_exists(deployed["web"])
    assert f"emptying the web bucket s3://{deployed['web']}" in out
    assert "  4 objects deleted in all" in out
    assert "DELETE_COMPLETE" in out and f"stack {STACK} deleted" in out
    # And the data, tables, users, secrets and images are kept, and each is named
    assert bucket_exists(deployed["data"])
    assert (
        boto3.client("s3")
        .get_object(Bucket=deployed["data"], Key="users/u1/workspace/notes.md")["Body"]
        .read()
        == b"keep me"
    )
    assert set(TABLES) <= set(boto3.client("dynamodb").list_tables()["TableNames"])
    assert pools() == ["test-users"]
    assert stack_exists("test-images")
    for name in [
        *TABLES,
        deployed["data"],
        deployed["pool"],
        "/test/secrets/anthropic-api-key",
        "test-images",
    ]:
        assert name in out
    assert "--purge" in out


def test_purge_with_the_typed_name_deletes_everything_the_stack_kept(deployed: dict[str, str]) -> None:
    # When the stack is purged where there is no terminal, with the name given as the explicit flag
    code, out, err = run(["--stack", STACK, "--purge", f"--yes-i-typed={STACK}"])

    # Then nothing of it is left: stack, buckets, tables, pool, secrets, the image stack and its repository
    assert code == 0, err
    assert not stack_exists(STACK) and not stack_exists("test-images")
    assert not bucket_exists(deployed["web"]) and not bucket_exists(deployed["data"])
    assert not set(TABLES) & set(boto3.client("dynamodb").list_tables()["TableNames"])
    assert pools() == []
    assert boto3.client("ssm").get_parameters_by_path(Path="/test/", Recursive=True)["Parameters"] == []
    assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert "deleted 1 images from ECR repository test-bridge" in out
    assert "purged" in out


def test_purge_after_a_plain_destroy_finds_what_was_kept_by_name(deployed: dict[str, str]) -> None:
    # Given a stack destroyed earlier without --purge
    assert run(["--stack", STACK])[0] == 0

    # When purged later
    code, out, err = run(["--stack", STACK, "--purge", f"--yes-i-typed={STACK}"])

    # Then the data bucket (found by the name CloudFormation generated), tables and pool go too
    assert code == 0, err
    assert not bucket_exists(deployed["data"])
    assert not set(TABLES) & set(boto3.client("dynamodb").list_tables()["TableNames"])
    assert pools() == []


@pytest.mark.parametrize(
    ("args", "interactive", "env", "said"),
    [
        (["--purge"], False, {}, "--yes-i-typed=test"),
        (["--purge"], True, {"CI": "true"}, "--yes-i-typed=test"),
        (["--purge", "--yes-i-typed=tset"], False, {}, "is not the stack's name"),
    ],
    ids=["no-terminal", "ci", "wrong-name"],
)
def test_purge_without_the_name_typed_deletes_nothing(
    deployed: dict[str, str], args: list[str], interactive: bool, env: dict[str, str], said: str
) -> None:
    code, out, err = run(["--stack", STACK, *args], interactive=interactive, env=env)

    assert code == 2 and said in err
    assert stack_exists(STACK) and bucket_exists(deployed["web"]) and bucket_exists(deployed["data"])
    assert pools() == ["test-users"]


def test_purge_at_a_terminal_asks_for_the_stack_name() -> None:
    with pytest.raises(script.UsageError, match="does not match"):
        script.confirm_purge(STACK, None, interactive=True, env={}, ask=lambda _: "yes")
    script.confirm_purge(STACK, None, interactive=True, env={}, ask=lambda _: f"{STACK}\n")


def test_yes_i_typed_goes_only_with_purge(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--stack", STACK, "--yes-i-typed=test"])
    assert "only goes with --purge" in capsys.readouterr().err


def test_a_missing_stack_is_a_usage_error(aws: dict[str, str]) -> None:
    code, _, err = run(["--stack", "nothing-here"])
    assert code == 2 and "no stack nothing-here" in err


class RefusingCloudFormation:
    """moto's CloudFormation, except that deleting the stack fails the way it does when a resource
    cannot go (here: a bucket someone filled again)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.deleted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def delete_stack(self, StackName: str) -> None:
        self.deleted = True

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.real.describe_stacks(StackName=StackName)
        if self.deleted:
            answer["Stacks"][0]["StackStatus"] = "DELETE_FAILED"
        return answer

    def describe_stack_events(self, StackName: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.real.describe_stack_events(StackName=StackName)
        if self.deleted:
            failed = {
                "EventId": "failed-1",
                "StackName": STACK,
                "LogicalResourceId": "WebBucket",
                "ResourceType": "AWS::S3::Bucket",
                "ResourceStatus": "DELETE_FAILED",
                "ResourceStatusReason": "The bucket you tried to delete is not empty",
            }
            answer["StackEvents"] = [failed, *answer["StackEvents"]]
        return answer


def test_a_failed_deletion_names_the_resource_and_reason_and_purges_nothing(deployed: dict[str, str]) -> None:
    # Given CloudFormation failing to delete the web bucket
    refusing = RefusingCloudFormation(boto3.client("cloudformation"))
    clients = account()
    failing = script.Account(**{**clients.__dict__, "cloudformation": refusing})
    out, err = io.StringIO(), io.StringIO()
    args = script.parse_args(["--stack", STACK, "--purge", f"--yes-i-typed={STACK}"])

    # When the stack is purged
    with contextlib.redirect_stderr(err):
        code = script.exit_code(lambda: script.run(args, failing, out, interactive=False, env={}))

    # Then the failure names the resource and CloudFormation's reason, and nothing kept was deleted
    assert code == 1
    assert "WebBucket (AWS::S3::Bucket): The bucket you tried to delete is not empty" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert "DELETE_FAILED" in out.getvalue()
    assert bucket_exists(deployed["data"]) and pools() == ["test-users"]
    assert set(TABLES) <= set(boto3.client("dynamodb").list_tables()["TableNames"])


def test_a_deletion_that_outlasts_the_timeout_says_how_to_follow_it(deployed: dict[str, str]) -> None:
    # Given a deletion that never finishes
    class Stuck(RefusingCloudFormation):
        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            answer: dict[str, Any] = self.real.describe_stacks(StackName=StackName)
            answer["Stacks"][0]["StackStatus"] = "DELETE_IN_PROGRESS"
            return answer

    now = [0.0]
    destroyer = script.Destroyer(
        account=script.Account(
            **{**account().__dict__, "cloudformation": Stuck(boto3.client("cloudformation"))}
        ),
        out=io.StringIO(),
        sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
        clock=lambda: now[0],
        timeout=60,
    )

    # Then it gives up after the timeout with what to do
    with pytest.raises(script.Failure, match="still DELETE_IN_PROGRESS after 1 minutes; run again"):
        destroyer.delete_stack(STACK)
