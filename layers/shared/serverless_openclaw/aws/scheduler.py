"""EventBridge Scheduler: the per-user schedules that invoke the wake function (warm windows, reminders).

Every schedule of a user for one reason is named `<reason>-<user>-<n>` in the stack's schedule group, so a
user's set can be listed and replaced as a whole: what is wanted is created or updated, whatever else
carries the prefix is deleted. A user with nothing wanted has no schedule left.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.config import WakeSchedulesConfig
from serverless_openclaw.wake_schedules import Wanted

if TYPE_CHECKING:
    from mypy_boto3_scheduler.type_defs import CreateScheduleInputTypeDef

_SAFE_USER = re.compile(r"[0-9A-Za-z_.-]{1,40}")
"""Schedule names are at most 64 of [0-9A-Za-z_.-]; a Cognito sub (36) fits as it is."""


def schedule_prefix(user_id: str, reason: str) -> str:
    """The name prefix of every schedule of this user for this reason."""
    user = user_id if _SAFE_USER.fullmatch(user_id) else hashlib.sha256(user_id.encode()).hexdigest()[:40]
    return f"{reason}-{user}-"


class WakeSchedules:
    """Writes, lists and deletes users' wake schedules in one schedule group."""

    def __init__(self, config: WakeSchedulesConfig) -> None:
        self.config = config

    def names(self, user_id: str, reason: str) -> list[str]:
        """The user's schedules for this reason, by name."""
        prefix = schedule_prefix(user_id, reason)
        mine = re.compile(re.escape(prefix) + r"[0-9]{1,3}")
        found: list[str] = []
        pages = client("scheduler").get_paginator("list_schedules")
        for page in pages.paginate(GroupName=self.config.group, NamePrefix=prefix):
            found.extend(item["Name"] for item in page.get("Schedules", []) if mine.fullmatch(item["Name"]))
        return sorted(found)

    def replace(self, user_id: str, reason: str, wanted: Sequence[Wanted]) -> list[str]:
        """Make the user's schedules for `reason` exactly `wanted`; the names they now have."""
        prefix = schedule_prefix(user_id, reason)
        existing = set(self.names(user_id, reason))
        names = [f"{prefix}{index}" for index in range(len(wanted))]
        for name, want in zip(names, wanted, strict=True):
            self._put(name, want, user_id, reason, exists=name in existing)
        for stale in sorted(existing - set(names)):
            self._delete(stale)
        return names

    def _put(self, name: str, want: Wanted, user_id: str, reason: str, *, exists: bool) -> None:
        # Create and update take the same fields: one request serves both.
        request: CreateScheduleInputTypeDef = {
            "Name": name,
            "GroupName": self.config.group,
            "ScheduleExpression": want.expression,
            "ScheduleExpressionTimezone": want.timezone,
            # At the minute: a window is started when it opens, not somewhere in a flexible range.
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {
                "Arn": self.config.target_arn,
                "RoleArn": self.config.role_arn,
                "Input": json.dumps({"userId": user_id, "reason": reason}),
                # A start an hour late is no use to a window; a failed one is retried a few times.
                "RetryPolicy": {"MaximumEventAgeInSeconds": 900, "MaximumRetryAttempts": 3},
            },
        }
        scheduler = client("scheduler")
        if exists:
            scheduler.update_schedule(**request)
            return
        try:
            scheduler.create_schedule(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            scheduler.update_schedule(**request)  # created meanwhile by a concurrent save: same content

    def _delete(self, name: str) -> None:
        try:
            client("scheduler").delete_schedule(Name=name, GroupName=self.config.group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
