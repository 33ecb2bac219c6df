"""A CloudFormation stack's state: whether it exists, and why its last operation failed (from its events)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from scripts.aws_errors import Failure, UsageError, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

SHOWN_FAILURES = 5
CASCADE_REASONS = ("Resource creation cancelled", "Resource update cancelled")
"""What CloudFormation says of the resources it stopped because another one failed: not the cause."""
OPERATION_STARTS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "IMPORT_IN_PROGRESS")


def describe_stack(cloudformation: CloudFormationClient, name: str) -> dict[str, Any] | None:
    """The stack as DescribeStacks reports it; None when it does not exist (yet)."""
    try:
        with aws_errors():
            found = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except UsageError:  # aws_errors' "Stack with id … does not exist"
        return None
    return dict(found[0]) if found else None


def wait_until_settled(
    cloudformation: CloudFormationClient,
    name: str,
    out: TextIO,
    *,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 1800.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll the stack until its operation ends, printing each status it passes; the final status."""
    deadline = time.monotonic() + timeout_seconds
    last = ""
    while True:
        found = describe_stack(cloudformation, name)
        status = str(found["StackStatus"]) if found else "DELETE_COMPLETE"
        if status != last:
            print(f"  {name}: {status}", file=out, flush=True)
            last = status
        if not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() >= deadline:
            raise Failure(
                f"stack {name} is still {status} after {timeout_seconds / 60:g} minutes: run again later"
            )
        sleep(poll_seconds)


def failed_resources(cloudformation: CloudFormationClient, stack: str) -> list[str]:
    """`LogicalId (Type): reason` for each resource the stack's last operation failed on, oldest first."""
    failures: list[str] = []
    with aws_errors():
        for page in cloudformation.get_paginator("describe_stack_events").paginate(StackName=stack):
            for event in page.get("StackEvents") or []:
                status = str(event.get("ResourceStatus", ""))
                reason = str(event.get("ResourceStatusReason") or "")
                if event.get("LogicalResourceId") == stack:
                    if status in OPERATION_STARTS and reason == "User Initiated":
                        return list(reversed(failures))  # where the last operation began
                    continue  # the stack's own summary ("The following resource(s) failed…") repeats them
                if status.endswith("_FAILED") and not reason.startswith(CASCADE_REASONS):
                    failures.append(
                        f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}): {reason}"
                    )
    return list(reversed(failures))


def stack_failure(cloudformation: CloudFormationClient, stack: str) -> Failure:
    """A Failure that names the resources that failed and why (or says where to look when none is found)."""
    failures = failed_resources(cloudformation, stack)
    if not failures:
        return Failure(
            f"stack {stack} did not reach a complete state: see its events in the CloudFormation console"
        )
    shown = "\n  ".join(failures[:SHOWN_FAILURES])
    more = f"\n  … and {len(failures) - SHOWN_FAILURES} more" if len(failures) > SHOWN_FAILURES else ""
    return Failure(f"stack {stack} failed:\n  {shown}{more}")
