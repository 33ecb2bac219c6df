"""Why a CloudFormation stack operation failed, from its events: the resources and CloudFormation's words."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from scripts.aws_errors import Failure, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

SHOWN_FAILURES = 5
CASCADE_REASONS = ("Resource creation cancelled", "Resource update cancelled")
"""What CloudFormation says of the resources it stopped because another one failed: not the cause."""


def failed_resources(
    cloudformation: CloudFormationClient, stack: str, since: datetime | None = None
) -> list[str]:
    """`LogicalId (Type): reason` for each resource that failed (since `since`), oldest first."""
    failures: list[str] = []
    with aws_errors():
        pages = cloudformation.get_paginator("describe_stack_events").paginate(StackName=stack)
        for page in pages:
            for event in page.get("StackEvents") or []:
                if since is not None and event["Timestamp"] < since:
                    return list(reversed(failures))
                status = str(event.get("ResourceStatus", ""))
                reason = str(event.get("ResourceStatusReason") or "")
                if not status.endswith("_FAILED") or reason.startswith(CASCADE_REASONS):
                    continue
                if event.get("LogicalResourceId") == stack and failures:
                    continue  # the stack's own summary ("The following resource(s) failed…") repeats them
                failures.append(f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}): {reason}")
    return list(reversed(failures))


def stack_failure(cloudformation: CloudFormationClient, stack: str, since: datetime | None = None) -> Failure:
    """A Failure that names the resources that failed and why (or says where to look when none is found)."""
    failures = failed_resources(cloudformation, stack, since)
    if not failures:
        return Failure(
            f"stack {stack} did not reach a complete state: see its events in the CloudFormation console"
        )
    shown = "\n  ".join(failures[:SHOWN_FAILURES])
    more = f"\n  … and {len(failures) - SHOWN_FAILURES} more" if len(failures) > SHOWN_FAILURES else ""
    return Failure(f"stack {stack} failed:\n  {shown}{more}")
