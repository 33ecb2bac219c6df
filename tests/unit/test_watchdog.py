"""The watchdog: idle agents stop, dead ones are reaped, queued messages start an agent or fail visibly."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import routing, task_events, watchdog
from serverless_openclaw.aws.clients import client as aws_client
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.messages import IncomingMessage
from serverless_openclaw.tasks import USER_TAG
from tests.conftest import load_event
from tests.fakes import Clock, FakeLauncher, RecordingPusher
from tests.unit.conftest_agents import OTHER, USER, client, queue, running, starting, stopped_event

MINUTE = 60.0


def _quiet_for(
    cp: ControlPlane, clock: Clock, seconds: float, *tasks: tuple[str, str], busy: bool = False
) -> None:
    """Let time pass while the given (user, task) bridges keep heartbeating: alive, but nobody writes."""
    step = 60.0
    passed = 0.0
    while passed < seconds:
        clock.advance(min(step, seconds - passed))
        passed += step
        for user, task in tasks:
            cp.task_state.heartbeat(user, task, busy, cp.clock())


def _kinds(actions: list[watchdog.Action]) -> list[tuple[str | None, str]]:
    return [(a.user_id, a.action) for a in actions]


# --- Idle agents -----------------------------------------------------------------------------------


def test_quiet_agent_is_stopped_after_the_idle_timeout(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a running agent nobody has written to for 16 minutes (default timeout 15)
    task = running(cp)
    client(cp, "tab-1")
    _quiet_for(cp, clock, 16 * MINUTE, (USER, task))

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the task is asked to stop, the row is Stopping and the tab says so
    assert actions == [watchdog.Action(USER, task, "stop_idle", "idle timeout")]
    assert launcher.stopped == [(task, "idle timeout")]
    assert cp.task_state.get(USER).status is Status.STOPPING
    assert pusher.frames("tab-1", "status")[-1]["status"] == "stopping"

    # And when ECS reports it stopped, the user is Idle again without any failure counted
    task_events.on_task_stopped(cp, stopped_event("task_events_essential_exit.json", task)["detail"])
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.start_attempts == 0
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"


def test_quiet_agent_whose_task_is_already_gone_is_settled_idle_at_once(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a quiet agent whose task ECS no longer knows (no STOPPED event will ever come for it)
    task = running(cp)
    client(cp, "tab-1")
    _quiet_for(cp, clock, 16 * MINUTE, (USER, task))
    launcher.live.discard(task)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the row is Idle now, not left Stopping for the stuck-Stopping rule, and the tab says idle
    assert actions == [watchdog.Action(USER, task, "stop_idle", "idle timeout")]
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.task_arn is None
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"


def test_busy_agent_is_never_stopped_for_idleness(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given an agent busy on a long reply, with no user activity for an hour
    task = running(cp, busy=True)
    _quiet_for(cp, clock, 60 * MINUTE, (USER, task), busy=True)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then it keeps running
    assert actions == []
    assert launcher.stopped == []
    assert cp.task_state.get(USER).status is Status.RUNNING


def test_agent_within_the_idle_timeout_keeps_running(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given an agent quiet for 10 minutes
    task = running(cp)
    _quiet_for(cp, clock, 10 * MINUTE, (USER, task))

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then nothing happens
    assert actions == [] and launcher.stopped == []


def test_custom_idle_timeout_is_honoured(cp: ControlPlane, launcher: FakeLauncher, clock: Clock) -> None:
    # Given a user who set a 60-minute idle timeout and another on the default 15
    cp.settings.put(USER, {"idleTimeoutMinutes": 60}, clock())
    task = running(cp)
    other_task = running(cp, OTHER)

    # When both are quiet for 20 minutes and the watchdog runs
    _quiet_for(cp, clock, 20 * MINUTE, (USER, task), (OTHER, other_task))
    first = watchdog.sweep(cp)

    # Then only the default user's agent is stopped
    assert _kinds(first) == [(OTHER, "stop_idle")]
    assert cp.task_state.get(USER).status is Status.RUNNING
    task_events.on_task_stopped(
        cp, stopped_event("task_events_essential_exit.json", other_task, OTHER)["detail"]
    )

    # And after 61 quiet minutes the patient user's agent stops too
    _quiet_for(cp, clock, 41 * MINUTE, (USER, task))
    assert _kinds(watchdog.sweep(cp)) == [(USER, "stop_idle")]
    assert (task, "idle timeout") in launcher.stopped


# --- Failed starts, stale heartbeats, stuck stops --------------------------------------------------


def test_start_past_its_deadline_is_a_failed_start(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a start that never reported in, with nothing queued
    task = starting(cp)
    client(cp, "tab-1")
    clock.advance(301)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the start counts as failed, the task is stopped and the user is told why; no new task
    assert _kinds(actions) == [(USER, "failed_start")]
    assert launcher.stopped == [(task, "start deadline passed")]
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.start_attempts == 1 and state.task_arn is None
    assert state.last_error and "300 seconds" in state.last_error
    errors = pusher.frames("tab-1", "error")
    assert [e["code"] for e in errors] == ["start_failed"] and "300 seconds" in errors[0]["error"]
    assert len(launcher.launched) == 1


def test_start_within_its_deadline_is_left_alone(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given a start two minutes old, with a message waiting for it
    queue(cp, "hello")
    task = starting(cp)
    clock.advance(120)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then it waits for the start: nothing stopped, nothing launched
    assert actions == []
    assert launcher.stopped == [] and len(launcher.launched) == 1
    assert cp.task_state.get(USER).task_arn == task


def test_failed_start_with_queued_messages_starts_again(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a message waiting for a start that never reported in
    queue(cp, "hello")
    old_task = starting(cp)
    client(cp, "tab-1")
    clock.advance(301)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the failed start is reaped and a second one launched for the message
    assert _kinds(actions) == [(USER, "failed_start"), (USER, "start_queued")]
    assert (old_task, "start deadline passed") in launcher.stopped
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.task_arn not in (None, old_task)
    assert state.start_attempts == 1
    assert pusher.frames("tab-1", "status")[-1]["status"] == "starting"


def test_three_failed_starts_give_up_and_fail_the_messages(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a waiting message and a start that never reports in, however often it is tried
    message_id = queue(cp, "please answer")
    starting(cp)
    client(cp, "tab-1")

    # When three sweeps each find the start overdue
    sweeps = []
    for _ in range(3):
        clock.advance(301)
        sweeps.append(_kinds(watchdog.sweep(cp)))

    # Then the first two retry, the third gives up: message failed, user told, nothing left Starting
    assert sweeps == [
        [(USER, "failed_start"), (USER, "start_queued")],
        [(USER, "failed_start"), (USER, "start_queued")],
        [(USER, "failed_start"), (USER, "gave_up")],
    ]
    assert len(launcher.launched) == 3
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.start_attempts == 3
    [item] = cp.inbox.items(USER)
    assert item.message_id == message_id and item.status == "failed"
    codes = [e["code"] for e in pusher.frames("tab-1", "error")]
    assert codes == ["start_failed", "start_failed", "start_failed", "start_gave_up"]
    assert "send it again" in pusher.frames("tab-1", "error")[-1]["error"]

    # And the next sweep leaves the user alone: nothing queued, nothing to start
    clock.advance(301)
    assert watchdog.sweep(cp) == []


def test_running_agent_with_a_stale_heartbeat_is_reset(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a running agent that stopped heartbeating four minutes ago (threshold 180 s)
    task = running(cp)
    client(cp, "tab-1")
    clock.advance(240)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the row is Idle (no failure counted), the task is stopped and the tab shows idle
    assert actions == [watchdog.Action(USER, task, "stale_reset", "heartbeat stale")]
    assert launcher.stopped == [(task, "heartbeat stale")]
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.task_arn is None and state.start_attempts == 0
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"


def test_stuck_stopping_is_settled_and_a_surviving_task_reaped(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given a stop whose STOPPED event never came, and the task still listed by ECS
    task = running(cp)
    assert routing.request_stop(cp, USER) == "stopping"
    launcher.live.add(task)  # ECS never got round to stopping it
    clock.advance(301)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the row is Idle and the survivor is stopped as an orphan
    assert _kinds(actions) == [(USER, "stuck_stopping"), (None, "orphan_stopped")]
    assert cp.task_state.get(USER).status is Status.IDLE
    assert launcher.stopped[-1] == (task, "orphan")


def test_recent_stopping_is_left_to_its_event(cp: ControlPlane, launcher: FakeLauncher, clock: Clock) -> None:
    # Given a stop one minute ago
    running(cp)
    routing.request_stop(cp, USER)
    stops = list(launcher.stopped)
    clock.advance(60)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then it waits for the STOPPED event
    assert actions == [] and launcher.stopped == stops
    assert cp.task_state.get(USER).status is Status.STOPPING


# --- Orphans ---------------------------------------------------------------------------------------


def test_task_no_row_references_is_stopped_as_an_orphan(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given a user's running agent and a task of our family that no row references
    task = running(cp)
    orphan = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0rphan0000000000000000000000000"
    launcher.live.add(orphan)
    clock.advance(30)
    cp.task_state.heartbeat(USER, task, False, clock())

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then only the orphan is stopped
    assert actions == [watchdog.Action(None, orphan, "orphan_stopped", "orphan")]
    assert launcher.stopped == [(orphan, "orphan")]
    assert task in launcher.live


def test_task_of_a_start_in_flight_is_not_taken_for_an_orphan(
    cp: ControlPlane, launcher: FakeLauncher
) -> None:
    # Given a start between its conditional write and recording its task ARN
    state = cp.task_state.touch_activity(USER, cp.clock())
    assert cp.task_state.transition(state, Status.STARTING, cp.clock(), set_={"startedAt": cp.clock()})
    just_launched = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/1aunch1ng000000000000000000000"
    launcher.live.add(just_launched)

    # When the watchdog runs in that instant
    actions = watchdog.sweep(cp)

    # Then the new task survives
    assert actions == [] and launcher.stopped == []


@dataclass
class _TaggedLauncher(FakeLauncher):
    """ECS whose DescribeTasks names the user each task runs for, as the real tasks' tags do."""

    owners: dict[str, str] = field(default_factory=dict)

    def describe(self, task_arns: list[str]) -> list[dict[str, Any]]:
        return [
            {**task, "tags": [{"key": USER_TAG, "value": self.owners[task["taskArn"]]}]}
            for task in super().describe(task_arns)
        ]


def test_only_the_starting_users_task_is_spared_while_their_start_is_in_flight(cp: ControlPlane) -> None:
    # Given a start in flight for one user, its task just launched, and a stray task of another user
    launcher = _TaggedLauncher()
    cp.launcher = launcher
    state = cp.task_state.touch_activity(USER, cp.clock())
    assert cp.task_state.transition(state, Status.STARTING, cp.clock(), set_={"startedAt": cp.clock()})
    just_launched = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/1aunch1ng000000000000000000000"
    stray = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0rphan0000000000000000000000000"
    launcher.live.update({just_launched, stray})
    launcher.owners.update({just_launched: USER, stray: OTHER})

    # When the watchdog runs in that instant
    actions = watchdog.sweep(cp)

    # Then the stray task is stopped as an orphan and the new one survives
    assert actions == [watchdog.Action(None, stray, "orphan_stopped", "orphan")]
    assert launcher.stopped == [(stray, "orphan")]


# --- Queued messages -------------------------------------------------------------------------------


def test_queued_messages_of_an_idle_user_start_an_agent(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a message that could not start an agent earlier (ECS refused once)
    launcher.fail_with = "ECS refused to start the agent (ThrottlingException: Rate exceeded)"
    routing.accept_message(
        cp, IncomingMessage(user_id=USER, text="hello", channel="web", conversation_id="c1")
    )
    launcher.fail_with = None
    client(cp, "tab-1")

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then an agent is started on Spot for it and the tab says starting
    assert _kinds(actions) == [(USER, "start_queued")]
    assert launcher.launched == [(USER, Capacity.SPOT)]
    assert cp.task_state.get(USER).status is Status.STARTING
    assert pusher.frames("tab-1", "status")[-1]["status"] == "starting"


def test_queued_start_refused_again_is_told_and_kept(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a queued message for an idle user and ECS still refusing
    queue(cp, "hello")
    client(cp, "tab-1")
    launcher.fail_with = "ECS refused to start the agent (ThrottlingException: Rate exceeded)"

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the attempt is counted and told, and the message stays queued for the next try
    assert _kinds(actions) == [(USER, "start_queued")]
    assert "start failed" in actions[0].reason
    assert cp.task_state.get(USER).start_attempts == 1
    assert [e["code"] for e in pusher.frames("tab-1", "error")] == ["start_failed"]
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["hello"]


def test_queued_messages_with_attempts_exhausted_are_failed_visibly(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given an idle user whose last three starts failed, with two messages waiting
    state = cp.task_state.touch_activity(USER, cp.clock())
    assert cp.task_state.transition(
        state, Status.IDLE, cp.clock(), set_={"startAttempts": 3, "lastError": "the task failed to start"}
    )
    first, second = queue(cp, "one"), queue(cp, "two")
    client(cp, "tab-1")

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then no task is launched, both messages are failed, and the user is told what happened
    assert _kinds(actions) == [(USER, "gave_up")]
    assert launcher.launched == []
    assert {(i.message_id, i.status) for i in cp.inbox.items(USER)} == {(first, "failed"), (second, "failed")}
    [notice] = pusher.frames("tab-1", "error")
    assert notice["code"] == "start_gave_up" and notice["failed"] == 2
    assert "the task failed to start" in notice["error"] and "send them again" in notice["error"]


def test_queued_messages_wait_for_a_running_agent(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given a running agent and a message it has not claimed yet
    task = running(cp)
    queue(cp, "hello")
    clock.advance(30)
    cp.task_state.heartbeat(USER, task, False, clock())

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the running agent is left to drain it
    assert actions == [] and len(launcher.launched) == 1


# --- Faults ----------------------------------------------------------------------------------------


@dataclass
class _BrokenStopLauncher(FakeLauncher):
    """ECS that fails StopTask for some tasks (throttling, a transient API error)."""

    broken: set[str] = field(default_factory=set)

    def stop(self, task_arn: str, reason: str) -> bool:
        if task_arn in self.broken:
            raise RuntimeError("StopTask throttled")
        return super().stop(task_arn, reason)


def test_one_broken_row_does_not_stop_the_sweep(cp: ControlPlane, clock: Clock) -> None:
    # Given two idle agents, ECS failing to stop the first one's task, and a corrupt TaskState row
    launcher = _BrokenStopLauncher()
    cp.launcher = launcher
    task = running(cp)
    other_task = running(cp, OTHER)
    launcher.broken.add(task)
    aws_client("dynamodb").put_item(
        TableName=cp.task_state.table,
        Item={"PK": {"S": "USER#corrupt"}, "status": {"S": "Exploded"}, "version": {"N": "1"}},
    )
    _quiet_for(cp, clock, 16 * MINUTE, (USER, task), (OTHER, other_task))

    # When the watchdog runs
    watchdog.sweep(cp)

    # Then the second agent is still stopped, and the first is left Stopping for the next sweep to settle
    assert launcher.stopped == [(other_task, "idle timeout")]
    assert cp.task_state.get(OTHER).status is Status.STOPPING
    assert cp.task_state.get(USER).status is Status.STOPPING


def test_an_orphan_ecs_will_not_stop_does_not_spare_the_others(cp: ControlPlane) -> None:
    # Given two tasks no row references, and ECS failing to stop the first
    launcher = _BrokenStopLauncher()
    cp.launcher = launcher
    stuck = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0rphan0000000000000000000000001"
    orphan = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0rphan0000000000000000000000002"
    launcher.live.update({stuck, orphan})
    launcher.broken.add(stuck)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the second is stopped, and only that is reported
    assert actions == [watchdog.Action(None, orphan, "orphan_stopped", "orphan")]
    assert launcher.live == {stuck}


def test_an_unlistable_ecs_skips_the_orphan_check_but_not_the_queued_messages(
    cp: ControlPlane, launcher: FakeLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queued message, a stray task, and ECS failing to list the running tasks
    queue(cp, "hello")
    stray = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0rphan0000000000000000000000000"
    launcher.live.add(stray)

    def unlistable() -> list[str]:
        raise ConnectionError("ECS endpoint unreachable")

    monkeypatch.setattr(launcher, "running_tasks", unlistable)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then no task is stopped, and the queued message still starts an agent
    assert _kinds(actions) == [(USER, "start_queued")]
    assert launcher.stopped == [] and stray in launcher.live


def test_rows_unreadable_on_the_second_look_stop_no_orphan(
    cp: ControlPlane, launcher: FakeLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stray task, and TaskState that can be read once but not a second time
    stray = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/0rphan0000000000000000000000000"
    launcher.live.add(stray)
    real_scan = cp.task_state.scan_states
    scans: list[int] = []

    def flaky_scan(malformed: Any) -> Any:
        scans.append(1)
        if len(scans) > 1:
            raise ConnectionError("DynamoDB endpoint unreachable")
        return real_scan(malformed)

    monkeypatch.setattr(cp.task_state, "scan_states", flaky_scan)

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then nothing is judged an orphan without rows to judge it by
    assert actions == [] and launcher.stopped == []
    assert len(scans) == 2


def test_failing_start_for_one_user_does_not_block_another(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given two idle users with queued messages, and ECS raising unexpectedly for the first
    queue(cp, "one", USER)
    queue(cp, "two", OTHER)
    real_launch = launcher.launch

    def launch(user_id: str, attempt_token: str, prefer: Capacity = Capacity.SPOT) -> Any:
        if user_id == USER:
            raise ConnectionError("ECS endpoint unreachable")
        return real_launch(user_id, attempt_token, prefer)

    launcher.launch = launch  # type: ignore[method-assign]

    # When the watchdog runs
    actions = watchdog.sweep(cp)

    # Then the other user's agent starts, and the first user's message is still queued
    assert (OTHER, "start_queued") in _kinds(actions)
    assert cp.task_state.get(OTHER).status is Status.STARTING
    assert cp.task_state.get(USER).status is Status.IDLE
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["one"]


# --- The Lambda handler ----------------------------------------------------------------------------


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.watchdog.app")
    monkeypatch.setattr(module, "plane", cp)
    return module


def test_handler_sweeps_on_schedule(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, clock: Clock, lambda_context: Any
) -> None:
    # Given an idle agent past its timeout
    task = running(cp)
    _quiet_for(cp, clock, 16 * MINUTE, (USER, task))

    # When the schedule fires
    result = app.lambda_handler(load_event("watchdog_schedule.json"), lambda_context)

    # Then it is stopped and the summary says so
    assert result == {
        "actions": [{"user_id": USER, "task_arn": task, "action": "stop_idle", "reason": "idle timeout"}]
    }
    assert launcher.stopped == [(task, "idle timeout")]


def test_handler_with_nothing_to_do(app: ModuleType, cp: ControlPlane, lambda_context: Any) -> None:
    # Given no users at all
    # When the schedule fires
    result = app.lambda_handler(load_event("watchdog_schedule.json"), lambda_context)

    # Then nothing was done
    assert result == {"actions": []}
