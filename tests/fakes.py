"""In-memory stand-ins for what lies outside the process: ECS, the WebSocket push API, the Lambda runtime."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from serverless_openclaw.lifecycle import Capacity
from serverless_openclaw.store.connections import ConnectionStore
from serverless_openclaw.tasks import Launched, StartError
from serverless_openclaw.wake_schedules import Wanted


@dataclass
class Clock:
    """A controllable clock (epoch seconds)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeSchedules:
    """Each user's wake schedules in memory; `failing` makes writes fail like a throttled Scheduler API."""

    kept: dict[tuple[str, str], list[Wanted]] = field(default_factory=dict)
    failing: bool = False

    def replace(self, user_id: str, reason: str, wanted: Any) -> list[str]:
        if self.failing:
            raise RuntimeError("ThrottlingException: Rate exceeded")
        self.kept[(user_id, reason)] = list(wanted)
        if not self.kept[(user_id, reason)]:
            del self.kept[(user_id, reason)]
        return [f"{reason}-{user_id}-{index}" for index in range(len(wanted))]


@dataclass
class FakeLauncher:
    """Records RunTask/StopTask; `spot_full` and `fail_with` make RunTask fail like ECS does."""

    spot_full: bool = False
    fail_with: str | None = None
    launched: list[tuple[str, Capacity]] = field(default_factory=list)
    stopped: list[tuple[str, str]] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def launch(self, user_id: str, attempt_token: str, prefer: Capacity = Capacity.SPOT) -> Launched:
        if self.fail_with:
            raise StartError(self.fail_with)
        capacity = prefer
        if prefer is Capacity.SPOT and self.spot_full:
            capacity = Capacity.ON_DEMAND
        arn = f"arn:aws:ecs:us-east-1:123456789012:task/test-cluster/task{next(self._ids)}"
        self.launched.append((user_id, capacity))
        self.live.add(arn)
        return Launched(task_arn=arn, capacity=capacity)

    def stop(self, task_arn: str, reason: str) -> bool:
        self.stopped.append((task_arn, reason))
        if task_arn in self.live:
            self.live.discard(task_arn)
            return True
        return False

    def running_tasks(self) -> list[str]:
        return sorted(self.live)

    def describe(self, task_arns: list[str]) -> list[dict[str, Any]]:
        return [
            {"taskArn": arn, "lastStatus": "RUNNING", "startedAt": 0} for arn in task_arns if arn in self.live
        ]


@dataclass
class RecordingPusher:
    """Delivers to an in-memory mailbox per connection; connections in `gone` behave like GoneException."""

    connections: ConnectionStore
    gone: set[str] = field(default_factory=set)
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def send(self, connection_id: str, payload: Mapping[str, Any]) -> bool:
        if connection_id in self.gone:
            self.connections.delete(connection_id)
            return False
        self.sent[connection_id].append(dict(payload))
        return True

    def to_user(self, user_id: str, payload: Mapping[str, Any]) -> int:
        return sum(self.send(c.connection_id, payload) for c in self.connections.for_user(user_id))

    def prefetch(self, user_id: str) -> None:
        """Nothing to warm: every fan-out reads the store."""

    def frames(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.sent.get(connection_id, []) if type_ is None or f.get("type") == type_]


class FakeLambdaContext:
    """What the Lambda runtime passes as `context` (what Powertools reads of it)."""

    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000
