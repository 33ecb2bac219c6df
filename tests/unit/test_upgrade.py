"""Upgrades keep old rows working: no TaskState row ever has to be reset by hand after a deploy.

A deploy registers a new revision of the bridge's task definition and hands its ARN to the functions
(TASK_DEFINITION). A task started from the previous revision runs on with the previous image: it is reused
until it stops, and the next start uses the new revision. TaskState names tasks, never revisions or
images, so a row written by the previous version is the new version's row; one that lacks what a newer
version adds, carries what an older one wrote, or names a status of another version is still judged and,
when stale, settled without anyone touching the table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from serverless_openclaw import routing, task_events, watchdog
from serverless_openclaw.aws import clients
from serverless_openclaw.aws.ecs import EcsLauncher
from serverless_openclaw.config import LaunchConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status
from serverless_openclaw.messages import IncomingMessage
from serverless_openclaw.store import codec
from tests.conftest import load_template
from tests.fakes import Clock, RecordingPusher
from tests.unit.conftest_agents import USER, client, stopped_event

OLD_DEFINITION = "arn:aws:ecs:us-east-1:123456789012:task-definition/test-bridge:1"
NEW_DEFINITION = "arn:aws:ecs:us-east-1:123456789012:task-definition/test-bridge:2"
OLD_TASK = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0ld0ld0ld"


@dataclass
class Ecs:
    """moto's ECS after a deploy: both revisions of the bridge registered, a task of the old one running."""

    launch: LaunchConfig
    """The functions' launch settings (cluster, network) before the deploy."""
    old_task: str

    def task(self, arn: str) -> dict[str, Any]:
        """ECS's view of one task."""
        tasks = clients.client("ecs").describe_tasks(cluster=self.launch.cluster, tasks=[arn])["tasks"]
        assert len(tasks) == 1, arn
        return dict(tasks[0])

    def running(self) -> list[str]:
        """The tasks ECS runs (every revision of the bridge's family)."""
        listed = clients.client("ecs").list_tasks(cluster=self.launch.cluster, desiredStatus="RUNNING")
        return list(listed["taskArns"])

    def stop(self, arn: str) -> None:
        """The task stops on its own (its container exited), as its STOPPED event will say."""
        clients.client("ecs").stop_task(
            cluster=self.launch.cluster, task=arn, reason="Essential container exited"
        )


@pytest.fixture
def ecs(cp: ControlPlane) -> Ecs:
    """The cluster (moto) with the previous and the new task definition, and the previous version's task."""
    ec2 = clients.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as the stack's VPC
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(VpcId=vpc, GroupName="bridge", Description="bridge")["GroupId"]
    launch = replace(cp.cfg.launch, subnets=(subnet,), security_groups=(group,))
    api = clients.client("ecs")
    api.create_cluster(clusterName=launch.cluster.rsplit("/", 1)[-1])
    registered = [
        api.register_task_definition(
            family="test-bridge",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=str(launch.cpu_units),
            memory=str(launch.memory_mib),
            containerDefinitions=[
                {"name": launch.container_name, "image": f"bridge:{image}", "memory": launch.memory_mib}
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        for image in ("previous", "new")
    ]
    assert registered == [OLD_DEFINITION, NEW_DEFINITION]
    # Started by the previous version's launcher, before the deploy.
    previous = EcsLauncher(replace(launch, task_definition=OLD_DEFINITION))
    return Ecs(launch=launch, old_task=previous.launch(USER, "before-the-deploy").task_arn)


@pytest.fixture
def upgraded(cp: ControlPlane, ecs: Ecs) -> ControlPlane:
    """The control plane after a deploy: the real ECS launcher, with the new revision in its environment."""
    cfg = replace(cp.cfg, launch=replace(ecs.launch, task_definition=NEW_DEFINITION))
    return replace(cp, cfg=cfg, launcher=EcsLauncher(cfg.launch))


def write_row(cp: ControlPlane, **attributes: Any) -> None:
    """A TaskState row exactly as some version of the code left it (no field added or checked)."""
    item = {"PK": f"USER#{USER}", **attributes}
    clients.client("dynamodb").put_item(TableName=cp.task_state.table, Item=codec.dump(item))


def row(cp: ControlPlane) -> dict[str, Any]:
    found = codec.load(
        clients.client("dynamodb")
        .get_item(TableName=cp.task_state.table, Key={"PK": {"S": f"USER#{USER}"}}, ConsistentRead=True)
        .get("Item")
    )
    assert found is not None
    return found


def send(cp: ControlPlane, text: str) -> str:
    """A user message through the same path ws_message and the Telegram webhook take; the status shown."""
    return routing.accept_message(
        cp, IncomingMessage(user_id=USER, text=text, channel="web", conversation_id="conv-1")
    )[1]


def previous_versions_running_row(cp: ControlPlane, **changes: Any) -> dict[str, Any]:
    """What the previous version wrote for a Running, connected agent of the previous task definition."""
    now = cp.clock()
    attributes: dict[str, Any] = {
        "status": "Running",
        "version": 7,
        "taskArn": OLD_TASK,
        "capacity": "FARGATE_SPOT",
        "agentConnectionId": "agent-old",
        "agentTokenHash": "ab" * 32,
        "startedAt": now - 600,
        "heartbeatAt": now - 10,
        "lastActivity": now - 60,
        "changedAt": now - 590,
        "busy": False,
        "startAttempts": 0,
    }
    attributes.update(changes)
    write_row(cp, **{k: v for k, v in attributes.items() if v is not None})
    return attributes


# ------------------------------------------------------------------------------------ the running old task


def test_the_old_definitions_task_is_reused_until_it_stops_then_the_new_definition_starts(
    upgraded: ControlPlane, ecs: Ecs, pusher: RecordingPusher
) -> None:
    cp = upgraded
    # Given the previous version's row for a task started from the previous task definition
    previous_versions_running_row(cp, taskArn=ecs.old_task)
    client(cp, "tab-1")

    # When a message arrives after the deploy
    shown = send(cp, "still there?")

    # Then the running task gets it (nudged on its agent connection): no new task, the row untouched
    assert shown == "running"
    assert pusher.frames("agent-old", "nudge")
    assert row(cp)["taskArn"] == ecs.old_task and row(cp)["version"] == 7
    assert ecs.running() == [ecs.old_task]

    # When the old task stops (its STOPPED event names the previous revision) with the message still queued
    ecs.stop(ecs.old_task)
    detail = stopped_event("task_events_essential_exit.json", ecs.old_task)["detail"]
    detail["taskDefinitionArn"] = OLD_DEFINITION
    outcome = task_events.on_task_stopped(cp, detail)

    # Then the next task is started from the new task definition, and the row names it
    assert outcome.reconciled and outcome.restarted
    after = row(cp)
    assert after["status"] == Status.STARTING.value and after["taskArn"] in ecs.running()
    assert ecs.running() == [after["taskArn"]]
    assert ecs.task(after["taskArn"])["taskDefinitionArn"] == NEW_DEFINITION
    assert "agentConnectionId" not in after and "agentTokenHash" not in after


def test_a_stale_row_of_the_old_definition_is_cleaned_up_and_the_next_start_is_new(
    upgraded: ControlPlane, ecs: Ecs
) -> None:
    cp = upgraded
    # Given a row naming an old task that hung during the deploy (no heartbeat for an hour)
    stale = cp.clock() - 3600
    previous_versions_running_row(cp, taskArn=ecs.old_task, heartbeatAt=stale, lastActivity=stale)

    # When a message arrives
    shown = send(cp, "hello after the upgrade")

    # Then the old task is stopped and replaced by one of the new definition at once
    assert shown == "starting"
    assert ecs.task(ecs.old_task)["desiredStatus"] == "STOPPED"
    new_task = row(cp)["taskArn"]
    assert ecs.running() == [new_task]
    assert ecs.task(new_task)["taskDefinitionArn"] == NEW_DEFINITION


def test_the_watchdog_settles_a_stale_row_of_the_old_definition_by_itself(
    upgraded: ControlPlane, ecs: Ecs
) -> None:
    cp = upgraded
    # Given the same stale row, and no message
    stale = cp.clock() - 3600
    previous_versions_running_row(cp, taskArn=ecs.old_task, heartbeatAt=stale, lastActivity=stale)

    # When the watchdog sweeps
    actions = watchdog.sweep(cp)

    # Then the old task is stopped and the row is Idle without anyone touching the table; nothing started
    assert [a.action for a in actions] == ["stale_reset"]
    assert row(cp)["status"] == Status.IDLE.value and "taskArn" not in row(cp)
    assert ecs.task(ecs.old_task)["desiredStatus"] == "STOPPED"
    assert ecs.running() == []


# --------------------------------------------------------------------------------- rows of other versions


def test_a_row_without_the_fields_later_versions_added_is_handled(
    cp: ControlPlane, pusher: RecordingPusher
) -> None:
    # Given a Running row as the first version wrote it: no token hash, capacity, busy, attempts, restart
    previous_versions_running_row(
        cp,
        agentTokenHash=None,
        capacity=None,
        busy=None,
        startAttempts=None,
        restartingUntil=None,
        changedAt=None,
    )

    # When a message arrives and the bridge heartbeats
    shown = send(cp, "hi")
    heartbeat_kept = cp.task_state.heartbeat(USER, OLD_TASK, False, cp.clock())

    # Then the task is reused as it is, and its heartbeat still counts
    assert shown == "running"
    assert pusher.frames("agent-old", "nudge")
    assert heartbeat_kept


def test_a_row_with_fields_an_older_version_wrote_is_handled(cp: ControlPlane) -> None:
    # Given a row carrying attributes no current code reads (a task definition, an address, a window)
    previous_versions_running_row(
        cp, taskDefinitionArn=OLD_DEFINITION, publicIp="203.0.113.7", prewarmUntil=cp.clock() + 60
    )

    # When the user stops the agent and its STOPPED event comes
    routing.request_stop(cp, USER)
    detail = stopped_event("task_events_essential_exit.json", OLD_TASK)["detail"]
    task_events.on_task_stopped(cp, detail)

    # Then the row is Idle like any other, the old attributes notwithstanding
    assert cp.task_state.get(USER).status is Status.IDLE


def test_a_stopping_row_without_its_change_time_does_not_wait_forever(
    cp: ControlPlane, launcher: Any
) -> None:
    # Given a Stopping row with no changedAt (written before the attribute existed, or by hand)
    previous_versions_running_row(cp, status="Stopping", changedAt=None, heartbeatAt=cp.clock() - 3600)

    # When the watchdog sweeps
    actions = watchdog.sweep(cp)

    # Then it is settled to Idle: the stopping deadline has no start to count from, so it has passed
    assert [a.action for a in actions] == ["stuck_stopping"]
    assert cp.task_state.get(USER).status is Status.IDLE


def test_a_status_of_another_version_is_wound_down_then_the_queued_message_starts_an_agent(
    cp: ControlPlane, launcher: Any
) -> None:
    # Given a row in a status this version does not know (written by a newer version before a rollback)
    previous_versions_running_row(cp, status="Draining", changedAt=cp.clock() - 10)

    # When a message arrives
    shown = send(cp, "anyone?")

    # Then the message is taken and the row is treated as a task on its way out
    assert shown == "stopping"
    assert cp.task_state.get(USER).status is Status.STOPPING

    # When the watchdog sweeps after the stopping deadline
    assert isinstance(cp.clock, Clock)
    cp.clock.advance(cp.cfg.lifecycle.stopping_deadline_seconds + 1)
    actions = watchdog.sweep(cp)

    # Then the row is settled, and a new agent starts for the queued message
    assert [a.action for a in actions] == ["stuck_stopping", "start_queued"]
    assert cp.task_state.get(USER).status is Status.STARTING
    assert len(launcher.launched) == 1


def test_an_unreadable_capacity_or_time_does_not_block_the_row(cp: ControlPlane, launcher: Any) -> None:
    # Given a row whose capacity and times are in a shape this version does not write
    previous_versions_running_row(cp, capacity="EC2", heartbeatAt="2026-01-01T00:00:00Z", busy="false")

    # When a message arrives
    shown = send(cp, "hello")

    # Then the row is judged (no heartbeat it can read: the task is taken for dead) and a new agent starts
    assert shown == "starting"
    assert len(launcher.launched) == 1


def test_a_running_row_of_a_version_without_wake_on_intent_keeps_the_users_idle_timeout(
    cp: ControlPlane, launcher: Any
) -> None:
    # Given a Running row an older version wrote (no warmSince), quiet for longer than the warm timeout
    quiet = (cp.cfg.lifecycle.warm_idle_timeout_minutes + 2) * 60
    previous_versions_running_row(cp, lastActivity=cp.clock() - quiet, changedAt=cp.clock() - quiet)

    # When the watchdog sweeps
    actions = watchdog.sweep(cp)

    # Then it is not taken for an agent woken without a message: it runs on until the idle timeout
    assert actions == [] and launcher.stopped == []
    assert cp.task_state.get(USER).warm_since is None


def test_an_unreadable_warm_mark_reads_as_none_and_a_message_clears_it(cp: ControlPlane) -> None:
    # Given a row whose warmSince is in a shape this version does not write
    previous_versions_running_row(cp, warmSince="2026-01-01T00:00:00Z")

    # When it is read, and when a message arrives
    read = cp.task_state.get(USER)
    send(cp, "hello")

    # Then it reads as "started by a message", and the message removes the attribute
    assert read.warm_since is None
    assert "warmSince" not in row(cp)


# ------------------------------------------------------------------------------------ the deploy's side


def test_the_functions_may_start_any_revision_and_stop_any_task_of_the_cluster() -> None:
    # Given the template's functions that start and stop agents
    resources = load_template()["Resources"]  # type: ignore[index]
    env = load_template()["Globals"]["Function"]["Environment"]["Variables"]  # type: ignore[index]

    # Then the task definition reaches them as the current revision's ARN (a deploy changes it) ...
    assert env["TASK_DEFINITION"] == {"Ref": "BridgeTaskDefinition"}
    # ... and their permissions name no revision: a task of the previous one can be stopped, a new one started
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                if statement.get("Action") == "ecs:RunTask":
                    assert statement["Resource"]["Fn::Sub"].endswith(
                        ":task-definition/${AWS::StackName}-bridge:*"
                    ), name
                if statement.get("Action") == "ecs:StopTask":
                    assert statement["Resource"]["Fn::Sub"].endswith(":task/${Cluster}/*"), name
    # And the STOPPED events of every revision reach the task events function
    pattern = resources["TaskEventsFunction"]["Properties"]["Events"]
    rule = next(iter(pattern.values()))["Properties"]["Pattern"]
    assert "taskDefinitionArn" not in rule["detail"]
