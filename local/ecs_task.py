"""A task as the ECS stand-in records it: its ids, what RunTask asked for, its statuses and, while it runs,
its process; `describe()` is how DescribeTasks, the metadata endpoint and task events show it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.ports import PortReservation
from local.resolve import ACCOUNT, REGION


def _epoch(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


@dataclass
class Task:
    """One task and, while it runs, its bridge process."""

    task_id: str
    arn: str
    cluster_arn: str
    task_definition_arn: str
    family: str
    container_name: str
    capacity_provider: str
    started_by: str | None
    tags: list[dict[str, str]]
    overrides: dict[str, Any]
    directory: Path
    log_path: Path
    created_at: float
    pull_started_at: float | None = None
    """When the container's "pull" began (PENDING); locally, what stands for it is the task's setup."""
    pull_stopped_at: float | None = None
    started_at: float | None = None
    stopping_at: float | None = None
    stopped_at: float | None = None
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    stop_code: str | None = None
    stopped_reason: str | None = None
    exit_code: int | None = None
    process: asyncio.subprocess.Process | None = None
    container_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ports: list[PortReservation] = field(default_factory=list)
    """Loopback ports held for its processes (what its own network namespace gives a Fargate task)."""

    @property
    def container_arn(self) -> str:
        """The ARN of the task's one container."""
        cluster = self.cluster_arn.rsplit("/", 1)[-1]
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:container/{cluster}/{self.task_id}/{self.container_id}"

    @property
    def pid(self) -> int | None:
        """The bridge's PID while it runs."""
        return self.process.pid if self.process and self.process.returncode is None else None

    def user_id(self) -> str | None:
        """USER_ID from the container overrides."""
        for container in self.overrides.get("containerOverrides") or []:
            for pair in container.get("environment") or []:
                if pair.get("name") == "USER_ID":
                    return str(pair.get("value"))
        return None

    def request_stop(self, stop_code: str, reason: str, now: float) -> bool:
        """Record a stop request (StopTask, a Spot interruption); False when the task is already stopping."""
        if self.desired_status == "STOPPED":
            return False
        self.desired_status = "STOPPED"
        self.stop_code = stop_code
        self.stopped_reason = reason
        self.stopping_at = now
        if self.last_status == "RUNNING":
            self.last_status = "DEACTIVATING"
        return True

    def exited(self, returncode: int, now: float) -> None:
        """The container's process ended: the task is STOPPED (its essential container exited, unless a
        stop was asked for), with the exit code ECS reports (128 + signal for a killed process)."""
        self.exit_code = returncode if returncode >= 0 else 128 - returncode
        if self.desired_status != "STOPPED":
            self.stop_code = "EssentialContainerExited"
            self.stopped_reason = "Essential container in task exited"
            self.stopping_at = now
        self.desired_status = "STOPPED"
        self.last_status = "STOPPED"
        self.stopped_at = now
        self.ended.set()

    def describe(self) -> dict[str, Any]:
        """The task as DescribeTasks shows it."""
        container: dict[str, Any] = {
            "containerArn": self.container_arn,
            "taskArn": self.arn,
            "name": self.container_name,
            "lastStatus": self.last_status,
            "launchType": "FARGATE",
            "cpu": "0",
        }
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        task: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": self.task_definition_arn,
            "group": f"family:{self.family}",
            "launchType": "FARGATE",
            "capacityProviderName": self.capacity_provider,
            "platformVersion": "1.4.0",
            "platformFamily": "Linux",
            "availabilityZone": f"{REGION}a",
            "connectivity": "CONNECTED",
            "lastStatus": self.last_status,
            "desiredStatus": self.desired_status,
            "overrides": self.overrides,
            "containers": [container],
            "createdAt": _epoch(self.created_at),
            "tags": self.tags,
            "version": 1
            + sum(
                t is not None
                for t in (
                    self.pull_started_at,
                    self.pull_stopped_at,
                    self.started_at,
                    self.stopping_at,
                    self.stopped_at,
                )
            ),
        }
        if self.started_by:
            task["startedBy"] = self.started_by
        for key, value in (
            ("pullStartedAt", self.pull_started_at),
            ("pullStoppedAt", self.pull_stopped_at),
            ("startedAt", self.started_at),
            ("stoppingAt", self.stopping_at),
            ("stoppedAt", self.stopped_at),
        ):
            if value is not None:
                task[key] = _epoch(value)
        if self.stop_code:
            task["stopCode"] = self.stop_code
        if self.stopped_reason:
            task["stoppedReason"] = self.stopped_reason
        return task
