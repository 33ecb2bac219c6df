"""The ECS stand-in, called with boto3 over loopback: tasks are real (tiny) processes, stops send signals."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.ecs import EcsStandIn
from local.ecs_task import Task
from local.events import matches
from local.ports import NoFreePort, reserve_port
from local.resolve import Resolver
from local.signature import LOCAL_CREDENTIALS
from tests.conftest import load_event
from tests.local.servers import FakeFunctions, LoopbackServer, eventually, serve, sigv4_headers

# A stand-in for the bridge. MODE (from the RunTask overrides) picks its behaviour; it writes `ready` in its
# working directory (the task's storage) once its SIGTERM handling is in place.
TASK_SCRIPT = r"""
import os, pathlib, signal, sys, time
if os.environ.get("BROKEN"):
    sys.exit(7)
mode = os.environ.get("MODE", "serve")
if mode == "exit3":
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pathlib.Path("ready").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""

TASK_ARN = re.compile(r"^arn:aws:ecs:us-east-1:123456789012:task/local-Cluster/[0-9a-f]{32}$")
USER = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"


@dataclass
class Ecs:
    """The stand-in on a loopback port, a boto3 client for it, and what its tasks did."""

    stand_in: EcsStandIn
    server: LoopbackServer
    client: Any
    functions: FakeFunctions
    tasks_dir: Path

    def run(self, mode: str = "serve", **extra: Any) -> dict[str, Any]:
        """RunTask as the control plane's launcher calls it; the one task started."""
        params: dict[str, Any] = {
            "cluster": "local-Cluster",
            "taskDefinition": self.stand_in.task_definition_arn,
            "count": 1,
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
            "networkConfiguration": {
                "awsvpcConfiguration": {"subnets": ["subnet-a"], "securityGroups": ["sg-1"]}
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": "bridge",
                        "environment": [
                            {"name": "USER_ID", "value": USER},
                            {"name": "MODE", "value": mode},
                        ],
                    }
                ]
            },
            "startedBy": "serverless-openclaw",
            "tags": [{"key": "user", "value": USER}],
            "enableECSManagedTags": True,
            **extra,
        }
        response = self.client.run_task(**params)
        assert response["failures"] == []
        (task,) = response["tasks"]
        return dict(task)

    def describe(self, arn: str) -> dict[str, Any]:
        (task,) = self.client.describe_tasks(cluster="local-Cluster", tasks=[arn])["tasks"]
        return dict(task)

    def stopped(self, arn: str) -> dict[str, Any]:
        """The task once ECS reports it STOPPED."""
        eventually(lambda: self.describe(arn)["lastStatus"] == "STOPPED", what=f"{arn} to stop")
        return self.describe(arn)

    def ready_pid(self, arn: str) -> int:
        """The task's process id, once it is up (it wrote `ready`)."""
        ready = self.tasks_dir / arn.rsplit("/", 1)[1] / "ready"
        eventually(lambda: ready.exists() and ready.read_text(), what="the task process to start")
        return int(ready.read_text())

    def events(self) -> list[dict[str, Any]]:
        """The events EventBridge delivered to TaskEventsFunction."""
        return self.functions.calls["TaskEventsFunction"]

    def stopped_events(self) -> list[dict[str, Any]]:
        """The STOPPED events TaskEventsFunction got (the changes before it reach it too, for the pull)."""
        return [e for e in self.events() if e["detail"]["lastStatus"] == "STOPPED"]

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.server.url}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def call(self, action: str, body: bytes, **signing: Any) -> tuple[int, str, Any]:
        """An ECS JSON-protocol call as raw bytes, SigV4-signed as boto3 signs it unless `signing` overrides:
        (status, Content-Type, parsed body)."""
        headers = {
            "X-Amz-Target": f"AmazonEC2ContainerServiceV20141113.{action}",
            "Content-Type": "application/x-amz-json-1.1",
        }
        headers = sigv4_headers(
            "POST", f"{self.server.url}/", body, service="ecs", headers=headers, **signing
        )
        request = urllib.request.Request(f"{self.server.url}/", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers["Content-Type"], json.loads(response.read())
        except urllib.error.HTTPError as exc:
            data = exc.read()
            try:
                return exc.code, exc.headers["Content-Type"], json.loads(data)
            except ValueError:  # a server error's plain text
                return exc.code, exc.headers["Content-Type"], {"__type": data.decode(errors="replace")}

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.server.url}{path}", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose here (its parent reaps it shortly).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def ecs(template: dict[str, Any], tmp_path: Path) -> Iterator[Ecs]:
    resolver = Resolver(template, "local")
    functions = FakeFunctions(resolver)

    def task_environment(task: Task) -> dict[str, str]:
        # As the stack does for the bridge and OpenClaw: a port held for the task until it ends.
        reservation = reserve_port(tmp_path / "ports")
        task.ports.append(reservation)
        env = {"PATH": os.environ.get("PATH", ""), "PORT": str(reservation.port)}
        for container in task.overrides.get("containerOverrides") or []:
            for pair in container.get("environment") or []:
                env[pair["name"]] = pair["value"]
        return env

    stand_in = EcsStandIn(
        resolver=resolver,
        functions=functions.host,
        tasks_dir=tmp_path / "tasks",
        logs_dir=tmp_path / "logs",
        command=[sys.executable, "-c", TASK_SCRIPT],
        task_environment=task_environment,
        broken_environment=lambda task: {"BROKEN": "1"},
        say=lambda text: None,
        credentials=LOCAL_CREDENTIALS,
    )
    with serve(stand_in.app) as server:
        client = boto3.client(
            "ecs",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        try:
            yield Ecs(stand_in, server, client, functions, tmp_path / "tasks")
        finally:
            # Every process a test started is stopped (SIGKILL after 1 s at worst) before the loop ends.
            stand_in.stop_timeout = 1
            server.run(stand_in.stop_all("test over"))


# ---------------------------------------------------------------------------------------------- RunTask


def test_a_tasks_ports_are_held_while_it_runs_and_released_when_it_stops(
    ecs: Ecs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running task, which was given a port of its own
    arn = ecs.run()["taskArn"]
    ecs.ready_pid(arn)
    (task,) = [t for t in ecs.stand_in.tasks.values() if t.arn == arn]
    (port,) = [r.port for r in task.ports]
    monkeypatch.setattr("local.ports.random.sample", lambda population, k: [port])

    # Then nobody else can have that port while it runs
    with pytest.raises(NoFreePort):
        reserve_port(tmp_path / "ports")

    # When it stops, the port is free again
    ecs.client.stop_task(cluster="local-Cluster", task=arn, reason="test")
    ecs.stopped(arn)
    eventually(lambda: task.ended.is_set(), what="the task to end")
    reserve_port(tmp_path / "ports").release()


def test_run_task_starts_a_process_and_returns_an_ecs_shaped_task(ecs: Ecs) -> None:
    # Given the stand-in of the template's cluster
    # When the control plane starts an agent on Spot
    task = ecs.run()

    # Then ECS answers with a task of our cluster, on FARGATE_SPOT, whose process really runs
    assert TASK_ARN.match(task["taskArn"])
    assert task["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/local-Cluster"
    assert task["taskDefinitionArn"] == "arn:aws:ecs:us-east-1:123456789012:task-definition/local-bridge:1"
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    assert task["lastStatus"] == "RUNNING"
    assert task["desiredStatus"] == "RUNNING"
    assert task["startedBy"] == "serverless-openclaw"
    assert process_alive(ecs.ready_pid(task["taskArn"]))


def test_describe_tasks_shows_running_tasks_and_reports_unknown_ones_missing(ecs: Ecs) -> None:
    # Given a running task
    arn = ecs.run()["taskArn"]
    unknown = "arn:aws:ecs:us-east-1:123456789012:task/local-Cluster/" + "0" * 32

    # When it is described with a task that does not exist, with and without tags
    plain = ecs.client.describe_tasks(cluster="local-Cluster", tasks=[arn, unknown])
    tagged = ecs.client.describe_tasks(cluster="local-Cluster", tasks=[arn], include=["TAGS"])

    # Then the running one is there with its overrides (USER_ID), the unknown one a MISSING failure
    (task,) = plain["tasks"]
    assert task["taskArn"] == arn
    assert task["lastStatus"] == "RUNNING"
    environment = task["overrides"]["containerOverrides"][0]["environment"]
    assert {"name": "USER_ID", "value": USER} in environment
    assert "tags" not in task
    assert plain["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    assert tagged["tasks"][0]["tags"] == [{"key": "user", "value": USER}]


def test_list_tasks_filters_by_family_and_desired_status(ecs: Ecs) -> None:
    # Given one running task and one that has stopped
    running = ecs.run()["taskArn"]
    ended = ecs.run(mode="exit3")["taskArn"]
    ecs.stopped(ended)

    # When tasks are listed
    def listed(**filters: Any) -> list[str]:
        return list(ecs.client.list_tasks(cluster="local-Cluster", **filters)["taskArns"])

    # Then RUNNING is the default, STOPPED lists the ended one, and families filter
    assert listed() == [running]
    assert listed(family="local-bridge") == [running]
    assert listed(family="someone-else") == []
    assert listed(desiredStatus="STOPPED") == [ended]
    assert listed(startedBy="serverless-openclaw", desiredStatus="RUNNING") == [running]
    assert listed(startedBy="someone-else") == []


def test_list_tasks_pages_like_ecs(ecs: Ecs) -> None:
    # Given three running tasks
    arns = [ecs.run()["taskArn"] for _ in range(3)]

    # When they are listed with boto3's paginator, two per page
    pages = ecs.client.get_paginator("list_tasks").paginate(
        cluster="local-Cluster", PaginationConfig={"PageSize": 2}
    )

    # Then every task is listed once, in start order
    assert [arn for page in pages for arn in page["taskArns"]] == arns


def test_the_same_client_token_starts_one_task_not_two(ecs: Ecs) -> None:
    # Given a RunTask that a retried invocation repeats with the same clientToken
    first = ecs.run(clientToken="attempt-1")

    # When it is repeated, and then a new attempt uses a new token
    again = ecs.run(clientToken="attempt-1")
    other = ecs.run(clientToken="attempt-2")

    # Then the repeat returns the same task and started no second process; the new token starts one
    assert again["taskArn"] == first["taskArn"]
    assert other["taskArn"] != first["taskArn"]
    ecs.ready_pid(other["taskArn"])
    assert sorted(p.name for p in ecs.tasks_dir.iterdir()) == sorted(
        t["taskArn"].rsplit("/", 1)[1] for t in (first, other)
    )
    assert len(ecs.client.list_tasks(cluster="local-Cluster")["taskArns"]) == 2


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        ({"cluster": "some-other-cluster"}, "ClusterNotFoundException", "Cluster not found"),
        ({"taskDefinition": "other-family:3"}, "InvalidParameterException", "TaskDefinition not found"),
        ({"count": 11}, "InvalidParameterException", "count"),
        (
            {"capacityProviderStrategy": [{"capacityProvider": "EC2_ASG", "weight": 1}]},
            "InvalidParameterException",
            "EC2_ASG",
        ),
        (
            {"overrides": {"containerOverrides": [{"name": "sidecar", "environment": []}]}},
            "InvalidParameterException",
            "sidecar",
        ),
    ],
)
def test_a_run_task_ecs_would_refuse_is_refused_and_starts_nothing(
    ecs: Ecs, change: dict[str, Any], error: str, says: str
) -> None:
    # Given a RunTask request with one thing wrong
    # When it is sent
    with pytest.raises(ecs.client.exceptions.ClientError) as refused:
        ecs.run(**change)

    # Then boto3 raises ECS's error and no process was started
    assert refused.value.response["Error"]["Code"] == error
    assert says in refused.value.response["Error"]["Message"]
    assert not ecs.tasks_dir.exists() or list(ecs.tasks_dir.iterdir()) == []


def test_ecs_refuses_a_call_it_cannot_authenticate_and_starts_nothing(ecs: Ecs) -> None:
    """ECS authenticates every call by its SigV4 signature before acting on it.

    AWS documents the errors of its JSON-protocol services for this (the "Common Errors" of each API
    reference; ECS's JSON 1.1 protocol carries them as `__type` and `message`, HTTP 400 as ECS sends
    them): an unknown access key is "The security token included in the request is invalid.", a
    signature other than the one the service computes is "The request signature we calculated does not
    match…", a request without one is "Missing Authentication Token".
    """
    body = json.dumps(
        {"cluster": "local-Cluster", "taskDefinition": ecs.stand_in.task_definition_arn}
    ).encode()
    unsigned = urllib.request.Request(
        f"{ecs.server.url}/",
        data=body,
        method="POST",
        headers={"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RunTask"},
    )

    # When RunTask arrives with an unknown key, a wrong secret, or no signature at all
    unknown_key = ecs.call("RunTask", body, access_key="AKIAUNKNOWN")
    wrong_secret = ecs.call("RunTask", body, secret="guess")
    with pytest.raises(urllib.error.HTTPError) as no_signature:
        urllib.request.urlopen(unsigned, timeout=10)

    # Then each is ECS's authentication error, and no task was started
    assert unknown_key == (
        400,
        "application/x-amz-json-1.1",
        {
            "__type": "UnrecognizedClientException",
            "message": "The security token included in the request is invalid.",
        },
    )
    assert wrong_secret[:2] == (400, "application/x-amz-json-1.1")
    assert wrong_secret[2]["__type"] == "InvalidSignatureException"
    assert wrong_secret[2]["message"].startswith("The request signature we calculated does not match")
    assert no_signature.value.code == 400
    assert json.loads(no_signature.value.read())["__type"] == "MissingAuthenticationTokenException"
    assert ecs.stand_in.tasks == {}

    # ... and boto3 with a wrong secret gets the same error as a ClientError it can handle
    forged = boto3.client(
        "ecs",
        endpoint_url=ecs.server.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="guess",
    )
    with pytest.raises(forged.exceptions.ClientError) as refused:
        forged.list_tasks(cluster="local-Cluster")
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_a_mistyped_or_missing_field_is_a_400_for_every_action(ecs: Ecs) -> None:
    """Each field of a request must have the type the ECS API reference gives it, and required fields
    must be present; AWS documents `InvalidParameterException` ("The specified parameter isn't valid",
    HTTP 400) among the errors of RunTask, StopTask, DescribeTasks and ListTasks for such a request.
    A client's mistake is never a server error (500)."""
    definition = ecs.stand_in.task_definition_arn
    cases: list[tuple[str, dict[str, Any]]] = [
        ("RunTask", {"taskDefinition": definition, "count": "1"}),
        ("RunTask", {"taskDefinition": definition, "count": True}),
        ("RunTask", {"taskDefinition": 7}),
        ("RunTask", {}),
        ("RunTask", {"taskDefinition": definition, "capacityProviderStrategy": ["FARGATE_SPOT"]}),
        (
            "RunTask",
            {"taskDefinition": definition, "capacityProviderStrategy": {"capacityProvider": "FARGATE"}},
        ),
        ("RunTask", {"taskDefinition": definition, "overrides": []}),
        ("RunTask", {"taskDefinition": definition, "overrides": {"containerOverrides": [{"name": 1}]}}),
        (
            "RunTask",
            {
                "taskDefinition": definition,
                "overrides": {
                    "containerOverrides": [{"name": "bridge", "environment": [{"name": "A", "value": 1}]}]
                },
            },
        ),
        ("RunTask", {"taskDefinition": definition, "tags": "user=me"}),
        ("RunTask", {"taskDefinition": definition, "clientToken": 12}),
        ("RunTask", {"taskDefinition": definition, "startedBy": ["me"]}),
        ("StopTask", {"task": 5}),
        ("StopTask", {"task": ["a"]}),
        ("StopTask", {}),
        ("StopTask", {"cluster": 1, "task": "a"}),
        ("DescribeTasks", {"tasks": "abc"}),
        ("DescribeTasks", {"tasks": [1]}),
        ("DescribeTasks", {"tasks": ["a"], "include": "TAGS"}),
        ("DescribeTasks", {}),
        ("DescribeTasks", {"tasks": []}),
        ("ListTasks", {"maxResults": "x"}),
        ("ListTasks", {"maxResults": 0}),
        ("ListTasks", {"nextToken": 5}),
        ("ListTasks", {"nextToken": "not-a-token"}),
        ("ListTasks", {"family": {"name": "x"}}),
    ]

    # When each is sent to the stack's cluster, correctly signed
    answers = {}
    for action, fields in cases:
        body = json.dumps({"cluster": "local-Cluster", **fields})
        answers[f"{action} {body}"] = ecs.call(action, body.encode())

    # Then every one is a 400 InvalidParameterException in ECS's JSON error shape, and nothing started
    refused = {
        case: (status, content_type, sorted(body), body.get("__type"))
        for case, (status, content_type, body) in answers.items()
    }
    expected = (400, "application/x-amz-json-1.1", ["__type", "message"], "InvalidParameterException")
    assert refused == dict.fromkeys(answers, expected)
    assert ecs.stand_in.tasks == {}


def test_the_cluster_may_be_named_by_arn(ecs: Ecs) -> None:
    # Given the cluster's ARN instead of its name (what a describe of the stack would give)
    # When tasks are started and listed with it
    arn = ecs.run(cluster="arn:aws:ecs:us-east-1:123456789012:cluster/local-Cluster")["taskArn"]

    # Then it is the same cluster
    assert ecs.client.list_tasks(cluster="local-Cluster")["taskArns"] == [arn]
    with pytest.raises(ecs.client.exceptions.ClusterNotFoundException):
        ecs.client.list_tasks(cluster="default")


# ---------------------------------------------------------------------------------------------- stopping


def test_stop_task_sends_sigterm_and_the_task_stops_cleanly_with_the_reason(ecs: Ecs) -> None:
    # Given a running task whose process handles SIGTERM by exiting 0 (the bridge's final backup)
    arn = ecs.run()["taskArn"]
    pid = ecs.ready_pid(arn)

    # When the watchdog stops it
    ecs.client.stop_task(cluster="local-Cluster", task=arn, reason="Idle for 15 minutes")

    # Then the process ended by itself with 0, and ECS says who stopped it and why
    task = ecs.stopped(arn)
    assert task["containers"][0]["exitCode"] == 0
    assert task["stopCode"] == "UserInitiated"
    assert task["stoppedReason"] == "Idle for 15 minutes"
    assert task["desiredStatus"] == "STOPPED"
    assert not process_alive(pid)
    # ... its ephemeral storage is gone, as on Fargate
    assert not (ecs.tasks_dir / arn.rsplit("/", 1)[1]).exists()
    # ... and TaskEventsFunction heard about it
    (event,) = eventually(ecs.stopped_events, what="the STOPPED event")
    assert event["detail"]["stopCode"] == "UserInitiated"
    assert event["detail"]["stoppedReason"] == "Idle for 15 minutes"


def test_a_task_ignoring_sigterm_is_killed_after_the_stop_timeout(ecs: Ecs) -> None:
    # Given a task whose process ignores SIGTERM, and a stop timeout of 1 s
    ecs.stand_in.stop_timeout = 1
    arn = ecs.run(mode="stubborn")["taskArn"]
    pid = ecs.ready_pid(arn)

    # When it is stopped
    ecs.client.stop_task(cluster="local-Cluster", task=arn, reason="stop now")

    # Then it is SIGKILLed (exit 137) once the timeout has passed
    task = ecs.stopped(arn)
    assert task["containers"][0]["exitCode"] == 128 + 9
    assert task["stopCode"] == "UserInitiated"
    assert not process_alive(pid)


def test_stopping_an_unknown_task_is_the_error_the_launcher_expects(ecs: Ecs) -> None:
    # Given no such task
    # When it is stopped
    # Then ECS's InvalidParameterException (the launcher takes it as "already gone")
    with pytest.raises(ecs.client.exceptions.InvalidParameterException):
        ecs.client.stop_task(
            cluster="local-Cluster", task="arn:aws:ecs:us-east-1:123456789012:task/local-Cluster/" + "f" * 32
        )


def test_stopping_a_stopped_task_changes_nothing(ecs: Ecs) -> None:
    # Given a task that stopped by itself
    arn = ecs.run(mode="exit3")["taskArn"]
    ecs.stopped(arn)

    # When StopTask arrives late
    ecs.client.stop_task(cluster="local-Cluster", task=arn, reason="late stop")

    # Then the task keeps the reason it really stopped for
    task = ecs.describe(arn)
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["stoppedReason"] == "Essential container in task exited"


# ---------------------------------------------------------------------------------------------- events


def test_a_process_that_exits_sends_a_stopped_event_to_the_matching_rule(ecs: Ecs) -> None:
    # Given a task whose process exits with 3 by itself (a bridge that failed to start)
    arn = ecs.run(mode="exit3")["taskArn"]

    # When it has ended
    task = ecs.stopped(arn)

    # Then ECS describes an essential container exit with its code ...
    assert task["containers"][0]["exitCode"] == 3
    assert task["stopCode"] == "EssentialContainerExited"
    # ... and TaskEventsFunction (whose EventBridge rule matches) got the "ECS Task State Change" event
    (event,) = eventually(ecs.stopped_events, what="the STOPPED event")
    assert event["source"] == "aws.ecs"
    assert event["detail-type"] == "ECS Task State Change"
    assert event["resources"] == [arn]
    detail = event["detail"]
    assert detail["taskArn"] == arn
    assert detail["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/local-Cluster"
    assert detail["lastStatus"] == "STOPPED"
    assert detail["stopCode"] == "EssentialContainerExited"
    assert detail["containers"][0]["exitCode"] == 3
    assert {"name": "USER_ID", "value": USER} in detail["overrides"]["containerOverrides"][0]["environment"]
    assert "tags" not in detail
    # ... and no other function was invoked by it
    others = {k: v for k, v in ecs.functions.calls.items() if k != "TaskEventsFunction" and v}
    assert others == {}


def test_the_real_templates_rules_match_stopped_events_of_our_cluster_and_our_bridges_pulls(ecs: Ecs) -> None:
    # Given the TaskEventsFunction rules of the template, resolved
    rules = ecs.stand_in.rules
    assert [function for function, _ in rules] == ["TaskEventsFunction", "TaskEventsFunction"]
    event: dict[str, Any] = {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "clusterArn": ecs.stand_in.cluster_arn,
            "group": "family:local-bridge",
            "lastStatus": "STOPPED",
            "extra": 1,
        },
        "account": "123456789012",
    }

    def changed(**detail: Any) -> dict[str, Any]:
        return {**event, "detail": {**event["detail"], **detail}}

    def taken(candidate: dict[str, Any]) -> bool:
        return any(matches(pattern, candidate) for _, pattern in rules)

    # When events are matched against them
    # Then a STOPPED task of our cluster matches, and the changes that can carry a pull of our bridge's tasks
    assert taken(event)
    assert all(taken(changed(lastStatus=s)) for s in ("PENDING", "ACTIVATING", "RUNNING"))
    assert not any(taken(changed(lastStatus=s)) for s in ("PROVISIONING", "DEACTIVATING", "STOPPING"))
    assert not taken(changed(lastStatus="PENDING", group="family:someone-else"))
    assert not taken(changed(clusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/other"))
    assert not taken({**event, "source": "aws.ec2"})
    assert not taken({k: v for k, v in event.items() if k != "detail"})


def test_a_task_tells_each_change_as_ecs_does_pending_with_its_pull_then_running_then_stopped(
    ecs: Ecs,
) -> None:
    # Given the documented event of a pull that began
    sample: Any = load_event("task_events_pull_started.json")

    # When a task runs and stops
    arn = ecs.run()["taskArn"]
    ecs.ready_pid(arn)
    ecs.client.stop_task(cluster="local-Cluster", task=arn, reason="test")
    eventually(ecs.stopped_events, what="the STOPPED event")
    delivered = [e for e in ecs.stand_in.events_delivered if e["resources"] == [arn]]

    # Then every change was an event, in ECS's order: the pull began and ended while PENDING, before RUNNING
    statuses = [e["detail"]["lastStatus"] for e in delivered]
    assert statuses == ["PROVISIONING", "PENDING", "PENDING", "RUNNING", "STOPPED"]
    provisioning, pull_began, pull_done, running, _ = (e["detail"] for e in delivered)
    assert "pullStartedAt" not in provisioning
    assert "pullStartedAt" in pull_began and "pullStoppedAt" not in pull_began
    assert pull_done["pullStartedAt"] <= pull_done["pullStoppedAt"] <= running["startedAt"]
    # And each has the documented event's shape: its envelope, the detail's fields, ISO timestamps
    for event in delivered:
        assert set(sample) <= set(event) and event["detail-type"] == sample["detail-type"]
    for field in ("taskArn", "clusterArn", "group", "lastStatus", "desiredStatus", "overrides", "version"):
        assert field in pull_began and type(pull_began[field]) is type(sample["detail"][field])
    for field in ("createdAt", "pullStartedAt", "updatedAt"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", pull_began[field]), field
    # And the rules sent TaskEventsFunction all but PROVISIONING, the STOPPED one last
    got = [e["detail"]["lastStatus"] for e in ecs.events() if e["resources"] == [arn]]
    assert got == ["PENDING", "PENDING", "RUNNING", "STOPPED"]


def test_event_pattern_semantics() -> None:
    # Given EventBridge patterns of the forms the template uses
    pattern = {"source": ["a", "b"], "detail": {"state": ["on"], "inner": {"x": [1]}}}

    # When events are matched
    # Then a list means "any of", nesting descends, extra fields are ignored, missing ones fail
    assert matches(pattern, {"source": "b", "detail": {"state": "on", "inner": {"x": 1, "y": 2}}, "z": 0})
    assert not matches(pattern, {"source": "c", "detail": {"state": "on", "inner": {"x": 1}}})
    assert not matches(pattern, {"source": "a", "detail": {"state": "off", "inner": {"x": 1}}})
    assert not matches(pattern, {"source": "a", "detail": {"state": "on"}})
    assert not matches(pattern, {"source": "a", "detail": "on"})
    assert matches({}, {"anything": 1})


# ---------------------------------------------------------------------------------------------- metadata


def test_the_task_metadata_endpoint_describes_the_task(ecs: Ecs) -> None:
    # Given a running task
    arn = ecs.run()["taskArn"]
    task_id = arn.rsplit("/", 1)[1]

    # When the bridge reads ECS_CONTAINER_METADATA_URI_V4 (/task and the container's own)
    status, task = ecs.get(f"/v4/{task_id}/task")
    container_status, container = ecs.get(f"/v4/{task_id}")
    missing, _ = ecs.get("/v4/nosuchtask/task")

    # Then it learns its own task ARN, cluster and container, as on Fargate
    assert status == 200
    assert task["TaskARN"] == arn
    assert task["Cluster"] == ecs.stand_in.cluster_arn
    assert task["Family"] == "local-bridge"
    assert task["KnownStatus"] == "RUNNING"
    assert task["Containers"][0]["Name"] == "bridge"
    assert container_status == 200
    assert container["Name"] == "bridge"
    assert missing == 404


# ---------------------------------------------------------------------------------------------- faults


def test_a_fault_makes_the_next_start_fail_and_only_that_one(ecs: Ecs) -> None:
    # Given the end-to-end tests ask for one failing start
    status, body = ecs.post("/_local/faults", json.dumps({"failStarts": 1}).encode())
    assert (status, body["failStarts"]) == (200, 1)

    # When two tasks are started
    broken = ecs.run()["taskArn"]
    healthy = ecs.run()["taskArn"]

    # Then the first one ran with the broken environment and exited; the second one runs
    assert ecs.stopped(broken)["containers"][0]["exitCode"] == 7
    assert process_alive(ecs.ready_pid(healthy))
    assert ecs.describe(healthy)["lastStatus"] == "RUNNING"


def test_a_spot_capacity_fault_fails_spot_starts_but_not_on_demand(ecs: Ecs) -> None:
    # Given one Spot capacity failure is asked for
    ecs.post("/_local/faults", json.dumps({"spotCapacityFailures": 1}).encode())

    # When a Spot start is tried, then an on-demand one
    spot = ecs.client.run_task(
        cluster="local-Cluster",
        taskDefinition="local-bridge",
        capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    )
    on_demand = ecs.run(capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])

    # Then Spot reports ECS's capacity failure (no task), and on-demand starts
    assert spot["tasks"] == []
    assert "Capacity is unavailable" in spot["failures"][0]["reason"]
    assert on_demand["capacityProviderName"] == "FARGATE"


@pytest.mark.parametrize("body", [b"[1]", b"not json", b'{"failStarts": -1}', b'{"failStarts": "x"}'])
def test_a_malformed_fault_request_is_a_400(ecs: Ecs, body: bytes) -> None:
    # Given a malformed fault request
    # When it is posted
    status, answer = ecs.post("/_local/faults", body)

    # Then it is refused with a message, and starts still work
    assert status == 400
    assert answer["message"]
    assert ecs.stand_in.fail_starts == 0


def test_an_interrupted_task_stops_as_spot_would_stop_it(ecs: Ecs) -> None:
    # Given a running Spot task
    arn = ecs.run()["taskArn"]
    ecs.ready_pid(arn)

    # When the end-to-end tests interrupt it
    status, _ = ecs.post(f"/_local/tasks/{arn.rsplit('/', 1)[1]}/interrupt", b"")

    # Then it stops with Spot's stop code after its SIGTERM
    assert status == 200
    task = ecs.stopped(arn)
    assert task["stopCode"] == "SpotInterruption"
    assert task["containers"][0]["exitCode"] == 0


def test_unsupported_operations_are_refused_by_name(ecs: Ecs) -> None:
    # Given an ECS operation the stand-in does not implement
    # When boto3 calls it
    with pytest.raises(ecs.client.exceptions.ClientError) as refused:
        ecs.client.list_clusters()

    # Then the error says so instead of pretending
    assert refused.value.response["Error"]["Code"] == "UnsupportedOperationException"
    assert "ListClusters" in refused.value.response["Error"]["Message"]
