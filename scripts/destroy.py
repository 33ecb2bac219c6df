"""Delete a deployed stack: empty its web bucket, delete the stack, say what was kept.

    python scripts/destroy.py --stack my-openclaw            # the stack goes; data, tables, users stay
    python scripts/destroy.py --stack my-openclaw --purge    # everything, after typing the stack name

template.yaml keeps the data bucket, the six tables and the user pool when the stack is deleted (their
DeletionPolicy is Retain), and the secrets in SSM were never part of it: a plain destroy leaves all of them,
so deploying the same stack name again finds every conversation, file and account where it was. `--purge`
deletes them too, and the image stack the deploy made (`<stack>-images`: the ECR repository and its images),
after the stack name is typed at the terminal; without one (or with CI=true) only
`--yes-i-typed=<stack>` will do. `--purge` also cleans up after an earlier plain destroy. The account-wide
role API Gateway logs with is always kept: other APIs of the account may log through it.
Exit codes: 0 done, 1 AWS failed (a deletion that failed names the resource and the reason), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

# Runnable as `python scripts/destroy.py` from anywhere: scripts/ and local/ live beside this file.
_REPO = Path(__file__).resolve().parent.parent
for _path in (str(_REPO / "layers" / "shared"), str(_REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from local.template import load_template  # noqa: E402
from scripts.aws_errors import Failure, UsageError, aws_errors, exit_code  # noqa: E402
from scripts.buckets import delete_objects  # noqa: E402
from scripts.stacks import add_stack_arguments, check_stack_name, deployed_session  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_ssm import SSMClient

POLL_SECONDS = 5.0
DELETE_TIMEOUT_SECONDS = 3600.0
"""CloudFront distributions alone take 15 minutes or more to go."""
_SSM_BATCH = 10
_ECR_BATCH = 100
WEB_BUCKET = "WebBucket"
DATA_BUCKET = "DataBucket"
USER_POOL = "UserPool"

# --------------------------------------------------------------------------------------------------------
# What a stack leaves behind
# --------------------------------------------------------------------------------------------------------


@dataclass
class Kept:
    """What outlives the stack: found by the stack's resources while it exists, by name afterwards."""

    tables: list[str] = field(default_factory=list)
    data_bucket: str | None = None
    user_pool: str | None = None
    parameters: list[str] = field(default_factory=list)
    images_stack: str | None = None

    def lines(self) -> list[str]:
        """One line per kept thing, as told to the user."""
        found = [f"DynamoDB table {name}" for name in self.tables]
        if self.data_bucket:
            found.append(f"S3 data bucket {self.data_bucket} (the agents' files, every version)")
        if self.user_pool:
            found.append(f"Cognito user pool {self.user_pool} (every account)")
        found += [f"SSM parameter {name}" for name in self.parameters]
        if self.images_stack:
            found.append(f"image stack {self.images_stack} (the ECR repository and its images)")
        return found


def retained_table_names(template: Mapping[str, Any], stack: str) -> list[str]:
    """The names template.yaml gives its retained tables (`${AWS::StackName}-…`) for this stack."""
    names = []
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::DynamoDB::Table" or resource.get("DeletionPolicy") != "Retain":
            continue
        name = (resource.get("Properties") or {}).get("TableName")
        pattern = name.get("Fn::Sub") if isinstance(name, dict) else None
        if not isinstance(pattern, str) or "${AWS::StackName}" not in pattern:
            raise UsageError(
                "template.yaml names a retained table other than ${AWS::StackName}-…: update destroy.py"
            )
        names.append(pattern.replace("${AWS::StackName}", stack))
    return names


@dataclass(frozen=True)
class Account:
    """The clients of every service a stack and what it keeps live in."""

    cloudformation: CloudFormationClient
    s3: S3Client
    dynamodb: DynamoDBClient
    cognito: CognitoIdentityProviderClient
    ssm: SSMClient
    ecr: Any
    """ECR (its type stubs are not among the project's dependencies)."""


def stack_id(cloudformation: CloudFormationClient, stack: str) -> str | None:
    """The stack's id (to follow it after deletion), None when there is no such stack."""
    with aws_errors():
        try:
            found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        except cloudformation.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
    live = [s for s in found if s.get("StackStatus") != "DELETE_COMPLETE"]
    return str(live[0]["StackId"]) if live else None


def stack_resources(cloudformation: CloudFormationClient, stack: str) -> dict[str, str]:
    """Physical id of every resource of the stack, by logical id."""
    found: dict[str, str] = {}
    with aws_errors():
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
            for item in page.get("StackResourceSummaries") or []:
                if item.get("PhysicalResourceId"):
                    found[str(item["LogicalResourceId"])] = str(item["PhysicalResourceId"])
    return found


def find_kept(account: Account, stack: str, resources: Mapping[str, str], images_stack: str) -> Kept:
    """What of this stack exists outside it (or will, once it is deleted)."""
    kept = Kept()
    with aws_errors():
        existing = set(_paginate(account.dynamodb, "list_tables", "TableNames"))
        kept.tables = [name for name in retained_table_names(load_template(), stack) if name in existing]
        kept.data_bucket = resources.get(DATA_BUCKET) or _bucket_by_prefix(
            account.s3, f"{stack.lower()}-databucket-"
        )
        kept.user_pool = resources.get(USER_POOL) or _pool_by_name(account.cognito, f"{stack}-users")
        kept.parameters = [
            str(p["Name"])
            for page in account.ssm.get_paginator("get_parameters_by_path").paginate(
                Path=f"/{stack}/", Recursive=True
            )
            for p in page.get("Parameters") or []
        ]
    kept.images_stack = images_stack if stack_id(account.cloudformation, images_stack) else None
    return kept


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterable[Any]:
    """Every item under `key` of every page of a listing."""
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key) or []


def _bucket_by_prefix(s3: S3Client, prefix: str) -> str | None:
    """The bucket CloudFormation named after the stack (it generated the name: only its start is known)."""
    names = sorted(
        str(b["Name"]) for b in s3.list_buckets().get("Buckets") or [] if b["Name"].startswith(prefix)
    )
    if len(names) > 1:
        raise UsageError(
            f"more than one bucket starts with {prefix}: {', '.join(names)}; delete the right one by hand"
        )
    return names[0] if names else None


def _pool_by_name(cognito: CognitoIdentityProviderClient, name: str) -> str | None:
    """The id of the user pool named so (template.yaml: `${AWS::StackName}-users`)."""
    ids = [
        str(p["Id"])
        for p in _paginate(cognito, "list_user_pools", "UserPools", MaxResults=60)
        if p["Name"] == name
    ]
    return ids[0] if ids else None


# --------------------------------------------------------------------------------------------------------
# Deleting
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destroyer:
    """Deletes, printing what it does as it goes."""

    account: Account
    out: TextIO
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    timeout: float = DELETE_TIMEOUT_SECONDS

    def say(self, text: str) -> None:
        """One line of progress."""
        print(text, file=self.out, flush=True)

    def empty_bucket(self, bucket: str) -> int:
        """Delete every object of the bucket, every version and delete marker too; how many went."""
        s3 = self.account.s3
        versions: list[ObjectIdentifierTypeDef] = []
        with aws_errors(hint=f"run again, or empty s3://{bucket} by hand"):
            try:
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                    for item in [*(page.get("Versions") or []), *(page.get("DeleteMarkers") or [])]:
                        versions.append(
                            {"Key": str(item["Key"]), "VersionId": str(item.get("VersionId") or "null")}
                        )
            except s3.exceptions.NoSuchBucket:  # an earlier, interrupted run got that far
                return 0
        delete_objects(s3, bucket, versions, hint=f"run again, or empty s3://{bucket} by hand")
        if versions:
            self.say(f"  deleted {len(versions)} objects from s3://{bucket}")
        return len(versions)

    def delete_stack(self, stack: str) -> None:
        """Delete the stack and wait, printing its events; Failure with every resource that would not go."""
        cloudformation = self.account.cloudformation
        found = stack_id(cloudformation, stack)
        if found is None:
            return
        with aws_errors():
            seen = {
                str(e["EventId"])
                for e in cloudformation.describe_stack_events(StackName=found)["StackEvents"]
            }
            cloudformation.delete_stack(StackName=found)
        self.say(f"deleting stack {stack} (this takes a while: CloudFront alone needs about 15 minutes)")
        deadline = self.clock() + self.timeout
        while True:
            with aws_errors(hint="the deletion goes on in CloudFormation; run again to follow it"):
                status = str(cloudformation.describe_stacks(StackName=found)["Stacks"][0]["StackStatus"])
                events = cloudformation.describe_stack_events(StackName=found)["StackEvents"]
            fresh = [e for e in reversed(events) if str(e["EventId"]) not in seen]
            seen.update(str(e["EventId"]) for e in fresh)
            for event in fresh:
                reason = f"  {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
                kind = event.get("ResourceType", "")
                self.say(f"  {event['ResourceStatus']:<20} {kind:<36} {event['LogicalResourceId']}{reason}")
            if status == "DELETE_COMPLETE":
                self.say(f"stack {stack} deleted")
                return
            if status == "DELETE_FAILED":
                raise Failure(_failed_deletion(stack, events))
            if self.clock() > deadline:
                raise Failure(
                    f"stack {stack} is still {status} after {self.timeout / 60:.0f} minutes; "
                    "run again to follow it"
                )
            self.sleep(POLL_SECONDS)

    def delete_images(self, images_stack: str) -> None:
        """Empty the image stack's ECR repositories, then delete the stack."""
        ecr = self.account.ecr
        for logical, repository in stack_resources(self.account.cloudformation, images_stack).items():
            if not self._is_repository(images_stack, logical):
                continue
            with aws_errors(hint="run again"):
                images = [
                    {k: v for k, v in image.items() if k in ("imageDigest", "imageTag")}
                    for image in _paginate(ecr, "list_images", "imageIds", repositoryName=repository)
                ]
                for start in range(0, len(images), _ECR_BATCH):
                    ecr.batch_delete_image(
                        repositoryName=repository, imageIds=images[start : start + _ECR_BATCH]
                    )
            self.say(f"  deleted {len(images)} images from ECR repository {repository}")
        self.delete_stack(images_stack)

    def _is_repository(self, stack: str, logical: str) -> bool:
        with aws_errors():
            detail = self.account.cloudformation.describe_stack_resource(
                StackName=stack, LogicalResourceId=logical
            )
        return detail["StackResourceDetail"]["ResourceType"] == "AWS::ECR::Repository"

    def purge(self, kept: Kept) -> None:
        """Delete everything the stack kept."""
        account = self.account
        if kept.images_stack:
            self.delete_images(kept.images_stack)
        with aws_errors(hint="run again with --purge to delete the rest"):
            for table in kept.tables:
                account.dynamodb.delete_table(TableName=table)
                self.say(f"  deleted DynamoDB table {table}")
            if kept.data_bucket:
                self.empty_bucket(kept.data_bucket)
                account.s3.delete_bucket(Bucket=kept.data_bucket)
                self.say(f"  deleted S3 bucket {kept.data_bucket}")
            if kept.user_pool:
                # template.yaml turns deletion protection on; it must be turned off to delete the pool.
                account.cognito.update_user_pool(UserPoolId=kept.user_pool, DeletionProtection="INACTIVE")
                account.cognito.delete_user_pool(UserPoolId=kept.user_pool)
                self.say(f"  deleted Cognito user pool {kept.user_pool}")
            for start in range(0, len(kept.parameters), _SSM_BATCH):
                batch = kept.parameters[start : start + _SSM_BATCH]
                account.ssm.delete_parameters(Names=batch)
                self.say(f"  deleted SSM parameters {', '.join(batch)}")


def _failed_deletion(stack: str, events: Sequence[Any]) -> str:
    """Every resource whose deletion failed, with CloudFormation's reason."""
    failed = [
        f"{e['LogicalResourceId']} ({e.get('ResourceType', '?')}): "
        f"{e.get('ResourceStatusReason', 'no reason given')}"
        for e in events
        if e.get("ResourceStatus") == "DELETE_FAILED" and e.get("LogicalResourceId") != stack
    ]
    detail = "; ".join(failed) if failed else "CloudFormation gave no resource"
    return f"stack {stack} could not be deleted: {detail}. Fix that, then run again"


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


def confirm_purge(
    stack: str,
    typed_flag: str | None,
    *,
    interactive: bool,
    env: Mapping[str, str],
    ask: Callable[[str], str] = input,
) -> None:
    """UsageError unless the stack name was typed (at the terminal, or as --yes-i-typed without one)."""
    if typed_flag is not None:
        if typed_flag != stack:
            raise UsageError(
                f"--yes-i-typed={typed_flag} is not the stack's name ({stack}): nothing was deleted"
            )
        return
    if not interactive or env.get("CI", "").lower() == "true":
        raise UsageError(
            f"--purge deletes every conversation, file and account of {stack}; "
            f"without a terminal to type the name at, pass --yes-i-typed={stack}"
        )
    typed = ask(
        f"This deletes every conversation, file and account. Type the stack name ({stack}) to go on: "
    )
    if typed.strip() != stack:
        raise UsageError("the name typed does not match: nothing was deleted")


def run(
    args: argparse.Namespace, account: Account, out: TextIO, *, interactive: bool, env: Mapping[str, str]
) -> None:
    """Carry out the deletion the arguments ask for."""
    destroyer = Destroyer(account=account, out=out)
    images_stack = args.images_stack or f"{args.stack}-images"
    exists = stack_id(account.cloudformation, args.stack) is not None
    if not exists and not args.purge:
        raise UsageError(
            f"there is no stack {args.stack} in this region (--purge deletes what an earlier destroy kept)"
        )
    if args.purge:
        confirm_purge(args.stack, args.yes_i_typed, interactive=interactive, env=env)
    resources = stack_resources(account.cloudformation, args.stack) if exists else {}
    if exists:
        web_bucket = resources.get(WEB_BUCKET)
        if web_bucket:
            destroyer.say(f"emptying the web bucket s3://{web_bucket}")
            destroyer.say(f"  {destroyer.empty_bucket(web_bucket)} objects deleted in all")
        destroyer.delete_stack(args.stack)
    kept = find_kept(account, args.stack, resources, images_stack)
    if args.purge:
        destroyer.say("purging what the stack kept")
        destroyer.purge(kept)
        destroyer.say(
            f"purged: nothing of {args.stack} is left but the account-wide API Gateway logging role"
        )
        return
    if kept.lines():
        destroyer.say("kept (deploy the same stack name again to use them, or run again with --purge):")
        for line in kept.lines():
            destroyer.say(f"  {line}")
    destroyer.say("also kept: the account-wide role API Gateway writes logs with")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="destroy.py",
        description="Delete a deployed stack; its data, tables, users and secrets stay unless --purge.",
        epilog="Exit codes: 0 done, 1 AWS failed, 2 usage.",
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--purge", action="store_true", help="also delete the kept data, users, secrets and the image stack"
    )
    parser.add_argument(
        "--yes-i-typed",
        metavar="STACK",
        help="the stack name, to --purge where there is no terminal to type it at",
    )
    parser.add_argument(
        "--images-stack", metavar="NAME", help="the deploy's image stack (default: <stack>-images)"
    )
    args = parser.parse_args(argv)
    if args.yes_i_typed is not None and not args.purge:
        parser.error("--yes-i-typed only goes with --purge")
    return args


def connect(region: str | None) -> Account:
    """Clients for a deployed stack's region."""
    session = deployed_session(region)
    with aws_errors():
        return Account(
            cloudformation=session.client("cloudformation"),
            s3=session.client("s3"),
            dynamodb=session.client("dynamodb"),
            cognito=session.client("cognito-idp"),
            ssm=session.client("ssm"),
            ecr=session.client("ecr"),
        )


def main(argv: list[str] | None = None) -> int:
    """Run the script; the process exit code."""
    args = parse_args(argv)

    def work() -> None:
        check_stack_name(args.stack)
        interactive = sys.stdin is not None and sys.stdin.isatty()
        run(args, connect(args.region), sys.stdout, interactive=interactive, env=os.environ)

    return exit_code(work)


if __name__ == "__main__":
    raise SystemExit(main())
