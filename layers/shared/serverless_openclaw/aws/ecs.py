"""Starting and stopping the user's bridge task on ECS Fargate (Spot first, on-demand when Spot is full)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.config import LaunchConfig
from serverless_openclaw.lifecycle import Capacity
from serverless_openclaw.observability import logger
from serverless_openclaw.tasks import USER_TAG, Launched, StartError

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import RunTaskRequestTypeDef, TaskTypeDef

STARTED_BY = "serverless-openclaw"


def _is_capacity_problem(text: str) -> bool:
    lowered = text.lower()
    return "capacity" in lowered or "insufficient" in lowered


class EcsLauncher:
    """RunTask / StopTask / ListTasks for the bridge task definition."""

    def __init__(self, cfg: LaunchConfig) -> None:
        self.cfg = cfg

    def launch(self, user_id: str, attempt_token: str, prefer: Capacity = Capacity.SPOT) -> Launched:
        """Start the user's task; falls back from Spot to on-demand only when Spot has no capacity."""
        try:
            return self._run(user_id, attempt_token, prefer)
        except StartError as exc:
            if prefer is Capacity.SPOT and exc.capacity:
                logger.warning(
                    "spot capacity unavailable, using on-demand", user_id=user_id, reason=exc.reason
                )
                return self._run(user_id, attempt_token, Capacity.ON_DEMAND)
            raise

    def _run(self, user_id: str, attempt_token: str, capacity: Capacity) -> Launched:
        # clientToken makes a retried invocation (same user, same TaskState version) start one task, not two.
        token = hashlib.sha256(f"{user_id}|{attempt_token}|{capacity.value}".encode()).hexdigest()[:64]
        params: RunTaskRequestTypeDef = {
            "cluster": self.cfg.cluster,
            "taskDefinition": self.cfg.task_definition,
            "count": 1,
            "capacityProviderStrategy": [{"capacityProvider": capacity.value, "weight": 1}],
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.cfg.subnets),
                    "securityGroups": list(self.cfg.security_groups),
                    "assignPublicIp": "ENABLED",
                }
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": self.cfg.container_name,
                        "environment": [
                            {"name": "USER_ID", "value": user_id},
                            {"name": "TASK_CAPACITY", "value": capacity.value},
                        ],
                    }
                ]
            },
            "startedBy": STARTED_BY,
            "tags": [{"key": USER_TAG, "value": user_id}],
            "enableECSManagedTags": True,
            "clientToken": token,
        }
        try:
            resp = client("ecs").run_task(**params)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            text = f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
            raise StartError(
                f"ECS refused to start the agent ({text})", capacity=_is_capacity_problem(text)
            ) from exc
        except BotoCoreError as exc:
            raise StartError(f"ECS could not be reached ({type(exc).__name__})") from exc
        tasks = resp.get("tasks") or []
        if tasks:
            return Launched(task_arn=tasks[0]["taskArn"], capacity=capacity)
        failures = resp.get("failures") or []
        text = "; ".join(
            f"{f.get('reason', 'unknown')}{': ' + f['detail'] if f.get('detail') else ''}" for f in failures
        )
        raise StartError(
            f"ECS did not start the agent ({text or 'no task and no reason given'})",
            capacity=_is_capacity_problem(text),
        )

    def stop(self, task_arn: str, reason: str) -> bool:
        """Ask ECS to stop a task (SIGTERM, then SIGKILL after the stop timeout); False if it is gone."""
        try:
            client("ecs").stop_task(cluster=self.cfg.cluster, task=task_arn, reason=reason[:255])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("InvalidParameterException", "ResourceNotFoundException"):
                logger.info("task already gone", task_arn=task_arn, code=code)
                return False
            raise
        return True

    def running_tasks(self) -> list[str]:
        """ARNs of our family's tasks that ECS still runs (or is starting)."""
        family = self.cfg.task_definition.rsplit("/", 1)[-1].split(":", 1)[0]
        arns: list[str] = []
        paginator = client("ecs").get_paginator("list_tasks")
        for status in ("RUNNING", "PENDING"):
            for page in paginator.paginate(cluster=self.cfg.cluster, family=family, desiredStatus=status):
                arns.extend(page.get("taskArns", []))
        return arns

    def describe(self, task_arns: list[str]) -> list[TaskTypeDef]:
        """ECS's view of some tasks (startedAt, tags, lastStatus, …)."""
        found: list[TaskTypeDef] = []
        for start in range(0, len(task_arns), 100):
            resp = client("ecs").describe_tasks(
                cluster=self.cfg.cluster, tasks=task_arns[start : start + 100], include=["TAGS"]
            )
            found.extend(resp.get("tasks", []))
        return found
