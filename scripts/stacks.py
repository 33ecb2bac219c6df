"""Where an operator script finds a stack: a deployed one (CloudFormation outputs) or the local one.

A deployed stack is reached with the credentials, region and endpoints boto3 finds; the local stack
(`python -m local up`) is described by its `endpoints.json`, whose moto server accepts any signature.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import boto3

from scripts.aws_errors import UsageError, aws_errors
from serverless_openclaw import untrusted

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

STACK_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
"""CloudFormation's rule for stack names; the name becomes part of SSM paths and resource names."""
MAX_ENDPOINTS_BYTES = 64 * 1024


class Credentials(TypedDict, total=False):
    """The keys a boto3 session signs its requests with, as its keyword arguments."""

    aws_access_key_id: str
    aws_secret_access_key: str


FAKE_CREDENTIALS: Credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
"""The local stack's moto server accepts any signature; these only exist so that requests can be signed."""


def add_stack_arguments(parser: argparse.ArgumentParser, *, local: bool = False) -> None:
    """--stack NAME (or, with `local`, --endpoints PATH of the local stack instead) and --region."""
    if not local:
        parser.add_argument(
            "--stack", metavar="NAME", required=True, help="deployed stack (CloudFormation name)"
        )
        parser.add_argument("--region", help="AWS region (default: boto3's)")
        return
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", metavar="NAME", help="deployed stack (CloudFormation name)")
    where.add_argument("--endpoints", metavar="PATH", type=Path, help="local stack's endpoints.json")
    parser.add_argument("--region", help="AWS region (default: boto3's, or endpoints.json's)")


def check_stack_name(stack: str) -> None:
    """UsageError unless CloudFormation could have named a stack so (no '/' may reach an SSM path)."""
    if not STACK_NAME_PATTERN.fullmatch(stack):
        raise UsageError(
            "that is not a stack name (a letter, then up to 127 letters, digits or '-'): "
            + ascii(stack[:140])
        )


def deployed_session(region: str | None) -> boto3.session.Session:
    """A boto3 session for a deployed stack; UsageError when no region is configured."""
    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    return session


def stack_outputs(cloudformation: CloudFormationClient, stack: str) -> dict[str, str]:
    """Every output of the stack that has a value, by key (UsageError when the stack does not exist)."""
    with aws_errors():
        described = cloudformation.describe_stacks(StackName=stack)
    return {
        str(output["OutputKey"]): str(output["OutputValue"])
        for output in described["Stacks"][0].get("Outputs") or []
        if output.get("OutputKey") and output.get("OutputValue")
    }


def load_endpoints(path: Path) -> dict[str, Any]:
    """The local stack's endpoints.json (written by `python -m local up`)."""
    try:
        data = untrusted.parse_json(path.read_bytes(), max_bytes=MAX_ENDPOINTS_BYTES)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: start the local stack first (python -m local up)") from None
    except untrusted.BadInput as exc:
        raise UsageError(f"cannot read {path}: {exc.reason}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


def local_endpoints(path: Path, *required: str) -> dict[str, Any]:
    """endpoints.json with its stack name checked and every `required` key present (UsageError otherwise)."""
    endpoints = load_endpoints(path)
    missing = [key for key in ("stackName", "awsEndpoint", *required) if not endpoints.get(key)]
    if missing:
        raise UsageError(f"{path} has no {', '.join(missing)}: is the local stack up to date?")
    try:
        check_stack_name(str(endpoints["stackName"]))
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return endpoints


def local_session(
    endpoints: Mapping[str, Any], region: str | None, env: Mapping[str, str]
) -> boto3.session.Session:
    """A boto3 session for the local stack: its region, and fake keys unless the shell has credentials."""
    region = region or str(endpoints.get("region") or "us-east-1")
    has_credentials = env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE")
    credentials: Credentials = {} if has_credentials else FAKE_CREDENTIALS
    return boto3.session.Session(region_name=region, **credentials)
