"""The ECS stand-in: RunTask starts a task on Fargate (local/fargate.py), StopTask stops it, task state change
events follow.

It speaks ECS's JSON protocol (`X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Action>`) for
RunTask, StopTask, DescribeTasks and ListTasks, so the launcher's boto3 calls are unchanged. A task's
container gets the task definition's environment, the RunTask overrides, what the image sets and what
Fargate adds (`ECS_CONTAINER_METADATA_URI_V4`, served here too). Each status change of a task
(PROVISIONING, PENDING with `pullStartedAt` and then `pullStoppedAt`, RUNNING, STOPPED) is an "ECS Task State
Change" event, matched against the template's EventBridge rules and delivered to the functions in order, as
EventBridge would.

`/_local/...` routes (never called by product code) list tasks with their PIDs, make the next starts fail,
or interrupt a task as Spot would; the end-to-end tests use them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.ecs_task import Task
from local.events import eventbridge_event, matches
from local.fargate import ContainerRuntime, Fargate, HostProcess, container_metadata, task_metadata
from local.functions import FunctionError, FunctionHost
from local.request_shapes import ServiceShapes, ShapeError
from local.resolve import ACCOUNT, REGION, Resolver
from local.signature import SignatureRefused, SigV4Verifier, received_request
from local.template import TemplateError, resources_of_type

log = logging.getLogger("local.ecs")

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
CLIENT_TOKEN_SECONDS = 3600
STOPPED_TASK_RETENTION_SECONDS = 3600  # ECS keeps describing stopped tasks for about an hour
MAX_DESCRIBED_TASKS = 100  # DescribeTasks: "a list of up to 100 task IDs or full ARN entries"
MAX_LISTED_TASKS = 100  # ListTasks: maxResults "can be between 1 and 100"
SPOT_CAPACITY_UNAVAILABLE = (
    "Capacity is unavailable at this time. Please try again later or in a different availability zone"
)


class EcsError(Exception):
    """A request ECS would refuse (HTTP 400 with this error type)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class EcsStandIn:
    """RunTask / StopTask / DescribeTasks / ListTasks, and the task metadata endpoint, over Fargate."""

    def __init__(
        self,
        *,
        resolver: Resolver,
        functions: FunctionHost,
        tasks_dir: Path,
        logs_dir: Path,
        command: list[str],
        task_environment: Callable[[Task], Mapping[str, str]],
        broken_environment: Callable[[Task], Mapping[str, str]],
        say: Callable[[str], None],
        credentials: Mapping[str, str],
        runtime: ContainerRuntime | None = None,
    ) -> None:
        self.resolver = resolver
        self.verifier = SigV4Verifier(credentials, "ecs")
        self.shapes = ServiceShapes("ecs")
        self.functions = functions
        self.tasks_dir = tasks_dir
        self.logs_dir = logs_dir
        self.task_environment = task_environment
        self.broken_environment = broken_environment
        self.port = 0
        self.tasks: dict[str, Task] = {}
        self.client_tokens: dict[str, tuple[float, list[str]]] = {}
        self.fail_starts = 0
        self.spot_capacity_failures = 0
        self.events_delivered: list[dict[str, Any]] = []
        self._delivering: asyncio.Future[None] | None = None
        self.fargate = Fargate(
            runtime or HostProcess(command), on_stopped=self._stopped, say=say, on_changed=self._changed
        )
        clusters = resources_of_type(resolver.template, "AWS::ECS::Cluster")
        definitions = resources_of_type(resolver.template, "AWS::ECS::TaskDefinition")
        if len(clusters) != 1 or len(definitions) != 1:
            raise TemplateError("the local ECS stand-in expects one AWS::ECS::Cluster and one TaskDefinition")
        (cluster_id,) = clusters
        (definition_id, definition) = next(iter(definitions.items()))
        self.cluster_name = resolver.physical_id(cluster_id)
        self.cluster_arn = resolver.attribute(cluster_id, "Arn")
        self.task_definition_arn = resolver.physical_id(definition_id)
        properties = resolver.resolve(definition.get("Properties") or {})
        self.family = str(properties.get("Family"))
        self.cpu, self.memory = str(properties.get("Cpu", "")), str(properties.get("Memory", ""))
        containers = properties.get("ContainerDefinitions") or []
        if len(containers) != 1:
            raise TemplateError("the local ECS stand-in runs task definitions with exactly one container")
        self.container = containers[0]
        self.container_name = str(self.container["Name"])
        self.stop_timeout = int(self.container.get("StopTimeout") or 30)
        self.rules = self._event_rules()
        self.app = Starlette(
            routes=[
                Route("/", self._api, methods=["POST"]),
                Route("/v4/{task_id}/task", self._task_metadata, methods=["GET"]),
                Route("/v4/{task_id}", self._container_metadata, methods=["GET"]),
                Route("/_local/tasks", self._local_tasks, methods=["GET"]),
                Route("/_local/faults", self._local_faults, methods=["POST"]),
                Route("/_local/tasks/{task_id}/interrupt", self._local_interrupt, methods=["POST"]),
            ]
        )

    @property
    def url(self) -> str:
        """What AWS_ENDPOINT_URL_ECS points at."""
        return f"http://127.0.0.1:{self.port}"

    def container_environment(self) -> dict[str, str]:
        """The task definition's container environment, resolved."""
        return {str(e["Name"]): str(e.get("Value", "")) for e in self.container.get("Environment") or []}

    # ------------------------------------------------------------------------------------ JSON API

    async def _api(self, request: Request) -> Response:
        arrived = await received_request(request)
        try:
            self.verifier.verify(arrived)
        except SignatureRefused as refused:
            # ECS's JSON protocol answers an unauthenticated call with 400 and the error's `__type`.
            return _ecs_error(EcsError(refused.code, refused.message))
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(TARGET_PREFIX):
            return _ecs_error(EcsError("UnknownOperationException", f"unknown operation {target!r}"))
        action = target.removeprefix(TARGET_PREFIX)
        handlers = {
            "RunTask": self.run_task,
            "StopTask": self.stop_task,
            "DescribeTasks": self.describe_tasks,
            "ListTasks": self.list_tasks,
        }
        handler = handlers.get(action)
        if handler is None:
            return _ecs_error(
                EcsError(
                    "UnsupportedOperationException", f"the local ECS stand-in does not implement {action}"
                )
            )
        try:
            result = await handler(self._request_body(action, arrived.body))
        except EcsError as exc:
            return _ecs_error(exc)
        return JSONResponse(result, media_type="application/x-amz-json-1.1")

    def _request_body(self, action: str, raw: bytes) -> dict[str, Any]:
        """The JSON body of an action, every field of the type ECS's model gives it; EcsError if not."""
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EcsError("SerializationException", "the request body is not JSON") from None
        try:
            self.shapes.check(action, body)
        except ShapeError as exc:
            raise EcsError("InvalidParameterException", str(exc)) from None
        if not isinstance(body, dict):  # the model's input is a structure: checked above
            raise EcsError("InvalidParameterException", "the request body must be a JSON object")
        return {name: value for name, value in body.items() if value is not None}  # null is absent

    def _check_cluster(self, body: Mapping[str, Any]) -> None:
        cluster = str(body.get("cluster") or "default")
        if cluster not in (self.cluster_name, self.cluster_arn):
            raise EcsError("ClusterNotFoundException", "Cluster not found.")

    def _find(self, reference: str) -> Task | None:
        task_id = reference.rsplit("/", 1)[-1]
        return self.tasks.get(task_id)

    async def run_task(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start `count` tasks on Fargate; a retry with the same clientToken gets the same tasks."""
        self._check_cluster(body)
        provider, count = self._run_request(body)
        token = body.get("clientToken")
        self._expire()
        if token and token in self.client_tokens:
            return {"tasks": [self.tasks[t].describe() for t in self.client_tokens[token][1]], "failures": []}
        if provider == "FARGATE_SPOT" and self.spot_capacity_failures > 0:
            self.spot_capacity_failures -= 1
            return {"tasks": [], "failures": [{"reason": SPOT_CAPACITY_UNAVAILABLE}]}
        overrides = self._overrides(body)
        started: list[Task] = []
        for _ in range(count):
            task = self._task(
                secrets.token_hex(16),
                provider,
                started_by=body.get("startedBy"),
                tags=list(body.get("tags") or []),
                overrides=overrides,
            )
            self.tasks[task.task_id] = task
            await self._launch(task)
            started.append(task)
        if token:
            self.client_tokens[token] = (time.time(), [t.task_id for t in started])
        return {"tasks": [t.describe() for t in started], "failures": []}

    def _run_request(self, body: dict[str, Any]) -> tuple[str, int]:
        """(capacity provider, count) of a RunTask request; EcsError where ECS would refuse it."""
        definition = str(body.get("taskDefinition") or "")
        if definition not in (self.task_definition_arn, self.family, f"{self.family}:1"):
            raise EcsError("InvalidParameterException", f"TaskDefinition not found: {definition}")
        count = body.get("count", 1)
        if not 1 <= count <= 10:
            raise EcsError("InvalidParameterException", "count must be between 1 and 10")
        strategy = body.get("capacityProviderStrategy") or []
        provider = strategy[0].get("capacityProvider") if strategy else "FARGATE"
        if provider not in CAPACITY_PROVIDERS:
            raise EcsError("InvalidParameterException", f"capacity provider {provider} is not associated")
        return str(provider), count

    def _overrides(self, body: dict[str, Any]) -> dict[str, Any]:
        """The RunTask overrides; EcsError when they name a container the task definition does not have."""
        overrides: dict[str, Any] = body.get("overrides") or {}
        for container in overrides.get("containerOverrides") or []:
            if container.get("name") != self.container_name:
                raise EcsError(
                    "InvalidParameterException",
                    f"Override for container named {container.get('name')} is not a container in the "
                    "TaskDefinition.",
                )
        return overrides

    async def stop_task(self, body: dict[str, Any]) -> dict[str, Any]:
        """SIGTERM the task's bridge; SIGKILL everything it started after the stop timeout."""
        self._check_cluster(body)
        task = self._find(str(body.get("task") or ""))
        if task is None:
            raise EcsError("InvalidParameterException", "The referenced task was not found.")
        reason = str(body.get("reason") or "Task stopped by user")[:255]
        self._request_stop(task, "UserInitiated", reason)
        return {"task": task.describe()}

    async def describe_tasks(self, body: dict[str, Any]) -> dict[str, Any]:
        """The tasks asked for; unknown ones as failures (MISSING), as ECS does."""
        self._check_cluster(body)
        found, failures = [], []
        include_tags = "TAGS" in (body.get("include") or [])
        references = body["tasks"]
        if not 1 <= len(references) <= MAX_DESCRIBED_TASKS:
            raise EcsError("InvalidParameterException", f"Tasks must name 1 to {MAX_DESCRIBED_TASKS} tasks.")
        for reference in references:
            task = self._find(str(reference))
            if task is None:
                failures.append({"arn": reference, "reason": "MISSING"})
                continue
            described = task.describe()
            if not include_tags:
                described.pop("tags", None)
            found.append(described)
        return {"tasks": found, "failures": failures}

    async def list_tasks(self, body: dict[str, Any]) -> dict[str, Any]:
        """Task ARNs by family, startedBy and desired status (RUNNING by default), paginated."""
        self._check_cluster(body)
        self._expire()
        desired = str(body.get("desiredStatus") or "RUNNING")
        family = body.get("family")
        started_by = body.get("startedBy")
        arns = [
            t.arn
            for t in sorted(self.tasks.values(), key=lambda t: t.created_at)
            if t.desired_status == desired
            and (family is None or t.family == family)
            and (started_by is None or t.started_by == started_by)
        ]
        start = _page_start(body.get("nextToken"))
        size = body.get("maxResults", MAX_LISTED_TASKS)
        if not 1 <= size <= MAX_LISTED_TASKS:
            raise EcsError(
                "InvalidParameterException", f"maxResults must be between 1 and {MAX_LISTED_TASKS}."
            )
        page = arns[start : start + size]
        result: dict[str, Any] = {"taskArns": page}
        if start + size < len(arns):
            result["nextToken"] = str(start + size)
        return result

    def _expire(self) -> None:
        now = time.time()
        for token, (at, _) in list(self.client_tokens.items()):
            if now - at > CLIENT_TOKEN_SECONDS:
                del self.client_tokens[token]
        for task_id, task in list(self.tasks.items()):
            if task.stopped_at and now - task.stopped_at > STOPPED_TASK_RETENTION_SECONDS:
                del self.tasks[task_id]

    # ------------------------------------------------------------------------------------ tasks

    async def _launch(self, task: Task) -> None:
        environment = dict(self.task_environment(task))
        if self.fail_starts > 0:
            self.fail_starts -= 1
            environment.update(self.broken_environment(task))
        await self.fargate.launch(task, environment)

    def _request_stop(self, task: Task, stop_code: str, reason: str) -> None:
        if task.request_stop(stop_code, reason, time.time()):
            self.fargate.stop(task, self.stop_timeout)

    def _task(
        self,
        task_id: str,
        capacity_provider: str,
        *,
        started_by: str | None = None,
        tags: list[dict[str, str]] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Task:
        return Task(
            task_id=task_id,
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{self.cluster_name}/{task_id}",
            cluster_arn=self.cluster_arn,
            task_definition_arn=self.task_definition_arn,
            family=self.family,
            container_name=self.container_name,
            capacity_provider=capacity_provider,
            started_by=started_by,
            tags=tags or [],
            overrides=overrides or {},
            directory=self.tasks_dir / task_id,
            log_path=self.logs_dir / f"task-{task_id}.log",
            created_at=time.time(),
        )

    async def report_lost(self, task_id: str, reason: str) -> None:
        """A task of an earlier run that ended without its event (the stack was killed): report it now."""
        task = self._task(task_id, "FARGATE_SPOT")
        task.stopping_at = task.stopped_at = task.created_at
        task.last_status = task.desired_status = "STOPPED"
        task.stop_code, task.stopped_reason, task.exit_code = "EssentialContainerExited", reason, 137
        task.ended.set()
        self.tasks[task_id] = task
        await self._stopped(task)

    # ------------------------------------------------------------------------------------ events

    def _event_rules(self) -> list[tuple[str, dict[str, Any]]]:
        rules: list[tuple[str, dict[str, Any]]] = []
        for logical_id, fn in self.functions.functions.items():
            for event in fn.definition.events.values():
                if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent"):
                    pattern = self.resolver.resolve((event.get("Properties") or {}).get("Pattern") or {})
                    rules.append((logical_id, pattern))
        return rules

    async def _stopped(self, task: Task) -> None:
        await self._emit(self._state_change_event(task))

    def _changed(self, task: Task) -> None:
        """A change before STOPPED: its event goes out in the background (EventBridge delivers
        asynchronously; RunTask does not wait for it), after the ones before it."""
        self._emit(self._state_change_event(task))

    def _state_change_event(self, task: Task) -> dict[str, Any]:
        detail = task.describe()
        detail.pop("tags", None)  # EventBridge's task events carry no tags
        detail["updatedAt"] = detail.get("stoppedAt") or round(time.time(), 3)
        # Events carry ISO 8601 timestamps where DescribeTasks has epoch seconds (ECS's documented shape).
        for key in EVENT_TIMESTAMPS:
            if isinstance(detail.get(key), int | float):
                detail[key] = event_timestamp(detail[key])
        detail["cpu"], detail["memory"] = self.cpu, self.memory
        return eventbridge_event("ECS Task State Change", "aws.ecs", [task.arn], detail)

    def _emit(self, event: dict[str, Any]) -> asyncio.Future[None]:
        """Deliver `event` to the functions whose rules match it, once the events before it were."""
        self.events_delivered.append(event)
        self._delivering = asyncio.ensure_future(self._deliver(event, self._delivering))
        return self._delivering

    async def _deliver(self, event: dict[str, Any], before: asyncio.Future[None] | None) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        for logical_id, pattern in self.rules:
            if not matches(pattern, event):
                continue
            # EventBridge invokes asynchronously; Lambda retries a failed async invocation twice.
            for attempt in range(3):
                try:
                    await self.functions.ainvoke(logical_id, event)
                    break
                except FunctionError as exc:
                    log.error(
                        "%s failed on a task event (attempt %d): %s", logical_id, attempt + 1, exc.reason
                    )
                    await asyncio.sleep(1 + attempt)

    # ------------------------------------------------------------------------------------ metadata

    async def _task_metadata(self, request: Request) -> Response:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"message": "task not found"}, status_code=404)
        return JSONResponse(task_metadata(task))

    async def _container_metadata(self, request: Request) -> Response:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"message": "task not found"}, status_code=404)
        return JSONResponse(container_metadata(task))

    # ------------------------------------------------------------------------------------ local control

    async def _local_tasks(self, request: Request) -> Response:
        return JSONResponse(
            {
                "tasks": [
                    {
                        "taskId": t.task_id,
                        "taskArn": t.arn,
                        "userId": t.user_id(),
                        "pid": t.pid,
                        "lastStatus": t.last_status,
                        "desiredStatus": t.desired_status,
                        "exitCode": t.exit_code,
                        "stopCode": t.stop_code,
                        "stoppedReason": t.stopped_reason,
                        "capacityProvider": t.capacity_provider,
                        "log": str(t.log_path),
                    }
                    for t in sorted(self.tasks.values(), key=lambda t: t.created_at)
                ],
                "eventsDelivered": len(self.events_delivered),
            }
        )

    async def _local_faults(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            fail_starts = int(body.get("failStarts", 0))
            spot = int(body.get("spotCapacityFailures", 0))
        except (ValueError, TypeError, AttributeError):
            return JSONResponse(
                {"message": 'expected {"failStarts": n, "spotCapacityFailures": n}'}, status_code=400
            )
        if fail_starts < 0 or spot < 0:
            return JSONResponse({"message": "counts must be >= 0"}, status_code=400)
        self.fail_starts = fail_starts
        self.spot_capacity_failures = spot
        return JSONResponse(
            {"failStarts": self.fail_starts, "spotCapacityFailures": self.spot_capacity_failures}
        )

    async def _local_interrupt(self, request: Request) -> Response:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or task.desired_status == "STOPPED":
            return JSONResponse({"message": "no such running task"}, status_code=404)
        self._request_stop(task, "SpotInterruption", "Your Spot Task was interrupted.")
        return JSONResponse({"task": task.describe()})

    # ------------------------------------------------------------------------------------ shutdown

    def running(self) -> list[Task]:
        """Tasks whose process has not ended."""
        return [t for t in self.tasks.values() if not t.ended.is_set() and t.process is not None]

    async def stop_all(self, reason: str) -> None:
        """Stop every task gracefully (each may take up to its stop timeout) and wait for the events."""
        tasks = self.running()
        for task in tasks:
            self._request_stop(task, "UserInitiated", reason)
        if tasks:
            await asyncio.gather(*(t.ended.wait() for t in tasks))
        await self.fargate.settled()
        if self._delivering is not None:
            await asyncio.gather(self._delivering, return_exceptions=True)


EVENT_TIMESTAMPS = (
    "createdAt",
    "pullStartedAt",
    "pullStoppedAt",
    "startedAt",
    "stoppingAt",
    "stoppedAt",
    "updatedAt",
)
"""The detail fields a task state change event gives as ISO 8601 strings."""


def event_timestamp(seconds: float) -> str:
    """Epoch seconds as a task event writes them: `2026-11-22T06:10:04.210Z`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page_start(token: str | None) -> int:
    """Where a ListTasks page starts: the nextToken of the page before (ours are offsets); EcsError if the
    token is not one this stand-in gave out."""
    if token is None:
        return 0
    if not token.isdigit():
        raise EcsError("InvalidParameterException", "Invalid nextToken")
    return int(token)


def _ecs_error(exc: EcsError) -> Response:
    return JSONResponse(
        {"__type": exc.error_type, "message": exc.message},
        status_code=400,
        media_type="application/x-amz-json-1.1",
    )
