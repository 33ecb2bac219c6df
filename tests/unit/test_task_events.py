"""ECS STOPPED events: the user's agent is released at once, failed starts are told, queued work restarts."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import routing, task_events
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import LIVE_TASK_ATTRIBUTES, Capacity, Status
from serverless_openclaw.messages import IncomingMessage
from tests.conftest import load_event
from tests.fakes import Clock, FakeLauncher, RecordingPusher
from tests.unit.conftest_agents import (
    OTHER,
    USER,
    client,
    queue,
    running,
    starting,
    stopped_event,
    telegram_waiting_note,
)

SPOT = "task_events_spot_interruption.json"
FAILED = "task_events_failed_start.json"
EXITED = "task_events_essential_exit.json"


def _detail(name: str, task_arn: str, user: str | None = USER) -> dict[str, Any]:
    detail: dict[str, Any] = stopped_event(name, task_arn, user)["detail"]
    return detail


# --- Running / Stopping tasks that stop ------------------------------------------------------------


def test_spot_interruption_with_queued_messages_restarts_on_demand(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a running agent and a message that arrived and is still waiting
    old_task = running(cp)
    queue(cp, "are you there?")
    client(cp, "tab-1")

    # When Spot takes the task back
    outcome = task_events.on_task_stopped(cp, _detail(SPOT, old_task))

    # Then a new task is launched on on-demand FARGATE for the waiting message, and the tab says starting
    assert outcome.reconciled and outcome.restarted
    assert launcher.launched[-1] == (USER, Capacity.ON_DEMAND)
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.task_arn not in (None, old_task)
    assert state.start_attempts == 0
    assert pusher.frames("tab-1", "status")[-1]["status"] == "starting"
    assert pusher.frames("tab-1", "error") == []
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["are you there?"]


def test_running_task_that_stops_with_nothing_queued_goes_idle(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a running, connected agent and nothing waiting
    task = running(cp)
    assert cp.task_state.attach_agent(USER, task, "agent-conn", cp.clock())
    client(cp, "tab-1")

    # When its essential container exits
    outcome = task_events.on_task_stopped(cp, _detail(EXITED, task))

    # Then the lease is released: Idle, no task, no agent connection, no failure counted, tab told idle
    assert outcome.reconciled and not outcome.restarted and not outcome.failed_start
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE
    assert state.task_arn is None and state.agent_connection_id is None and state.heartbeat_at is None
    assert state.start_attempts == 0 and state.last_error is None
    assert pusher.frames("tab-1", "status")[-1] == {"type": "status", "status": "idle"}
    assert len(launcher.launched) == 1


def test_stopping_task_keeps_its_attempt_count(cp: ControlPlane, pusher: RecordingPusher) -> None:
    # Given an agent the user asked to stop, on a row that still remembers an earlier failed start
    task = running(cp)
    state = cp.task_state.get(USER)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock(), set_={"startAttempts": 1})
    assert routing.request_stop(cp, USER) == "stopping"
    client(cp, "tab-1")

    # When ECS reports the task stopped
    outcome = task_events.on_task_stopped(cp, _detail(EXITED, task))

    # Then the row is Idle and the attempt count is neither reset nor increased
    assert outcome.previous_status == "Stopping"
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.task_arn is None and state.start_attempts == 1
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"


def test_busy_agent_that_crashes_restarts_its_released_work_on_spot(
    cp: ControlPlane, launcher: FakeLauncher
) -> None:
    # Given a busy agent whose claimed message came back to the queue (lease released)
    task = running(cp, busy=True)
    queue(cp, "long job")

    # When the container exits (not a Spot interruption)
    task_events.on_task_stopped(cp, _detail(EXITED, task))

    # Then the restart prefers Spot again, and the new row is not busy
    assert launcher.launched[-1] == (USER, Capacity.SPOT)
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and not state.busy


def test_crashed_bridge_leaves_no_lease_behind_and_its_message_is_answered_by_a_new_task(
    cp: ControlPlane, launcher: FakeLauncher
) -> None:
    # Given a running agent that leased a message and was then SIGKILLed mid-reply (lease still valid)
    task = running(cp, busy=True)
    message_id = queue(cp, "long job")
    claimed = cp.inbox.claim_next(USER, task, cp.clock(), lease_seconds=120)
    assert claimed is not None and claimed.message_id == message_id
    assert cp.inbox.pending(USER, cp.clock()) == []

    # When ECS reports the container gone (exit 137)
    outcome = task_events.on_task_stopped(cp, _detail(EXITED, task))

    # Then the message is queued again at once and a new task starts for it
    assert outcome.restarted
    assert [i.message_id for i in cp.inbox.pending(USER, cp.clock())] == [message_id]
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.task_arn != task


def test_stopped_task_does_not_release_the_lease_of_another_task(cp: ControlPlane) -> None:
    # Given a message leased by the user's current task, and an event about an older task
    task = running(cp)
    queue(cp, "hello")
    assert cp.inbox.claim_next(USER, task, cp.clock(), lease_seconds=120) is not None

    # When the older task's STOPPED event arrives
    task_events.on_task_stopped(cp, _detail(EXITED, "arn:aws:ecs:us-east-1:123456789012:task/c/old"))

    # Then the current task keeps its lease
    [item] = cp.inbox.items(USER)
    assert item.status == "claimed" and item.claimed_by == task


# --- Failed starts ---------------------------------------------------------------------------------


def test_failed_start_is_counted_and_explained(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a start in progress and a tab open, with nothing queued
    task = starting(cp)
    client(cp, "tab-1")

    # When the task stops before it ever ran (the image could not be pulled)
    outcome = task_events.on_task_stopped(cp, _detail(FAILED, task))

    # Then the row is Idle with one failed attempt and a readable reason, and the user is told why
    assert outcome.failed_start and not outcome.restarted
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.task_arn is None
    assert state.start_attempts == 1
    assert state.last_error and "CannotPullContainerError" in state.last_error
    errors = pusher.frames("tab-1", "error")
    assert [e["code"] for e in errors] == ["start_failed"]
    assert "failed to start" in errors[0]["error"] and "CannotPullContainerError" in errors[0]["error"]
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"
    assert len(launcher.launched) == 1


def test_failed_start_with_queued_messages_tries_again_on_spot(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a message waiting for an agent that is starting
    queue(cp, "hello")
    task = starting(cp)
    client(cp, "tab-1")

    # When that start fails
    outcome = task_events.on_task_stopped(cp, _detail(FAILED, task))

    # Then a second attempt is launched on Spot (not a capacity problem) and the message still waits
    assert outcome.restarted
    assert launcher.launched == [(USER, Capacity.SPOT), (USER, Capacity.SPOT)]
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.start_attempts == 1
    assert pusher.frames("tab-1", "status")[-1]["status"] == "starting"
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["hello"]


def test_capacity_failure_at_start_retries_on_demand(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given a message waiting for a starting Spot task
    queue(cp, "hello")
    task = starting(cp)
    detail = _detail(FAILED, task)
    detail["stoppedReason"] = "Capacity is unavailable at this time. Please try again later."

    # When the task stops because there was no capacity for it
    task_events.on_task_stopped(cp, detail)

    # Then the next attempt goes to on-demand FARGATE
    assert launcher.launched[-1] == (USER, Capacity.ON_DEMAND)


def test_third_failed_start_gives_up_and_fails_the_messages(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a waiting message and a tab open
    message_id = queue(cp, "please answer")
    client(cp, "tab-1")
    task = starting(cp)

    # When three starts in a row fail
    outcomes = []
    for _ in range(3):
        outcomes.append(task_events.on_task_stopped(cp, _detail(FAILED, task)))
        task = cp.task_state.get(USER).task_arn or ""

    # Then after the third the message is marked failed, the user is told clearly, nothing is Starting
    assert [o.restarted for o in outcomes] == [True, True, False]
    assert outcomes[-1].gave_up
    assert len(launcher.launched) == 3
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.start_attempts == 3 and state.task_arn is None
    assert cp.inbox.pending(USER, cp.clock()) == []
    [failed] = cp.inbox.items(USER)
    assert failed.message_id == message_id and failed.status == "failed"
    gave_up = [e for e in pusher.frames("tab-1", "error") if e["code"] == "start_gave_up"]
    assert len(gave_up) == 1
    assert "3 attempts" in gave_up[0]["error"] and "send it again" in gave_up[0]["error"]
    assert gave_up[0]["messageIds"] == [message_id]
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"


def test_giving_up_tells_telegram_users_in_their_waiting_message(cp: ControlPlane) -> None:
    # Given a Telegram chat where one message waits under a "waking up" note and another has none yet,
    # the bot's token in SSM, and a web message beside them
    token = "7000000001:give-up-test-token"
    with telegram_waiting_note(cp, token) as (sim, note):
        for text, reply_to in [
            ("from telegram", {"chatId": 42, "messageId": 7, "placeholderId": note}),
            ("no note", {"chatId": 42, "messageId": 8}),
            ("from the web", None),
        ]:
            cp.intake.accept(
                IncomingMessage(
                    user_id=USER,
                    text=text,
                    channel="telegram" if reply_to else "web",
                    conversation_id="conv-1",
                    reply_to=reply_to,
                ),
                cp.clock(),
            )
        task = starting(cp)

        # When the starts fail until the control plane gives up
        for _ in range(3):
            task_events.on_task_stopped(cp, _detail(FAILED, task))
            task = cp.task_state.get(USER).task_arn or ""

    # Then the chat shows the bad news twice: in place of the note, and as a message for the other one
    notices = sim.chat(42)
    assert len(notices) == 2 and sim.messages[42][0].message_id == note
    assert all(n.startswith("⚠️") and "could not be started after 3 attempts" in n for n in notices)


def test_restart_refused_by_ecs_on_the_last_attempt_gives_up_at_once(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given two failed starts behind us, a waiting message and a running agent that Spot takes back
    task = running(cp)
    state = cp.task_state.get(USER)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock(), set_={"startAttempts": 2})
    queue(cp, "hello")
    client(cp, "tab-1")
    launcher.fail_with = "ECS refused to start the agent (AccessDeniedException: not allowed)"

    # When the restart is refused by ECS
    outcome = task_events.on_task_stopped(cp, _detail(SPOT, task))

    # Then the refusal is told, the message is failed with a clear notice, nothing is left Starting
    assert outcome.gave_up and not outcome.restarted
    assert [e["code"] for e in pusher.frames("tab-1", "error")] == ["start_failed", "start_gave_up"]
    assert "AccessDeniedException" in pusher.frames("tab-1", "error")[1]["error"]
    assert cp.task_state.get(USER).status is Status.IDLE
    assert [i.status for i in cp.inbox.items(USER)] == ["failed"]


# --- Which row an event may touch ------------------------------------------------------------------


def test_event_for_a_superseded_task_changes_nothing(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, clock: Clock
) -> None:
    # Given a start that was replaced by a newer one (the old task is gone from the row)
    old_task = starting(cp)
    clock.advance(400)
    queue(cp, "hello")
    assert routing.ensure_agent(cp, cp.task_state.get(USER)) == "starting"
    before = cp.task_state.get(USER)
    assert before.task_arn != old_task
    client(cp, "tab-1")

    # When the late STOPPED event of the old task arrives
    outcome = task_events.on_task_stopped(cp, _detail(FAILED, old_task))

    # Then the current start is untouched: same row, nothing launched, nothing told
    assert not outcome.reconciled
    assert cp.task_state.get(USER) == before
    assert len(launcher.launched) == 2
    assert pusher.frames("tab-1") == []


def test_event_without_user_id_finds_the_row_by_task(cp: ControlPlane, pusher: RecordingPusher) -> None:
    # Given two users' agents running
    task = running(cp)
    other_task = running(cp, OTHER)
    client(cp, "tab-1")

    # When an event without the USER_ID override reports the first user's task stopped
    outcome = task_events.on_task_stopped(cp, _detail(EXITED, task, user=None))

    # Then the first user's row (found by its task) is released and the other user's is untouched
    assert outcome.user_id == USER and outcome.reconciled
    assert cp.task_state.get(USER).status is Status.IDLE
    other = cp.task_state.get(OTHER)
    assert other.status is Status.RUNNING and other.task_arn == other_task
    assert pusher.frames("tab-1", "status")[-1]["status"] == "idle"


def test_event_without_user_id_releases_the_lease_of_the_crashed_task_at_once(
    cp: ControlPlane, launcher: FakeLauncher
) -> None:
    # Given a busy agent that leased a message (lease valid for two more minutes) and then died with its
    # host, so the STOPPED event that finally comes carries neither the USER_ID override nor a user tag
    task = running(cp, busy=True)
    message_id = queue(cp, "long job")
    assert cp.inbox.claim_next(USER, task, cp.clock(), lease_seconds=120) is not None

    # When that event arrives
    outcome = task_events.on_task_stopped(cp, _detail(EXITED, task, user=None))

    # Then the user is found by the task their row references, the message is queued again at once and a
    # new task starts for it (nobody waits for the lease to run out and the watchdog to sweep)
    assert outcome.user_id == USER and outcome.restarted
    assert [i.message_id for i in cp.inbox.pending(USER, cp.clock())] == [message_id]
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.task_arn != task


def test_event_for_an_unknown_task_changes_nothing(cp: ControlPlane) -> None:
    # Given a running agent
    task = running(cp)
    before = cp.task_state.get(USER)

    # When events arrive for a task nobody references, with and without a USER_ID
    stray = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/ffffffffffffffffffffffffffffffff"
    first = task_events.on_task_stopped(cp, _detail(EXITED, stray, user=None))
    second = task_events.on_task_stopped(cp, _detail(EXITED, stray))

    # Then nothing changes
    assert not first.reconciled and not second.reconciled
    assert cp.task_state.get(USER) == before and before.task_arn == task


def test_event_that_is_not_stopped_or_has_no_task_is_ignored(cp: ControlPlane) -> None:
    # Given a running agent
    task = running(cp)
    before = cp.task_state.get(USER)
    not_stopped = _detail(EXITED, task) | {"lastStatus": "DEPROVISIONING"}
    no_arn = {k: v for k, v in _detail(EXITED, task).items() if k != "taskArn"}

    # When such events are handled
    outcomes = [task_events.on_task_stopped(cp, d) for d in (not_stopped, no_arn)]

    # Then the agent keeps running
    assert [o.reconciled for o in outcomes] == [False, False]
    assert cp.task_state.get(USER) == before


# --- Readable reasons ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (SPOT, "AWS reclaimed the Spot capacity it ran on (Your Spot Task was interrupted.)"),
        (EXITED, "the agent exited with code 1 (Essential container in task exited)"),
    ],
)
def test_stop_reasons_are_readable(name: str, expected: str) -> None:
    # Given / When a sample event's reason is described
    text = task_events.stop_reason(_detail(name, "arn:task"))

    # Then it is a sentence a user can read
    assert text == expected


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ({"stopCode": "TerminationNotice"}, "AWS reclaimed the Spot capacity it ran on"),
        (
            {"stoppedReason": "Spot capacity  not\navailable"},
            "AWS reclaimed the Spot capacity it ran on (Spot capacity not available)",
        ),
        ({"stopCode": "UserInitiated", "stoppedReason": "no capacity"}, "it was stopped (no capacity)"),
        ({"stopCode": "UserInitiated"}, "it was stopped"),
        ({"stopCode": "TaskFailedToStart"}, "the task failed to start"),
        ({"stopCode": "EssentialContainerExited"}, "the agent exited"),
        ({"containers": [{"name": "bridge", "exitCode": 0}]}, "the agent exited with code 0"),
        (
            {"containers": [{"name": "sidecar", "exitCode": 3}, {"name": "bridge", "exitCode": 137}]},
            "the agent exited with code 137",
        ),
        ({"containers": [{"name": "sidecar", "exitCode": 3}]}, "the agent exited with code 3"),
        ({"containers": ["bridge", {"name": "bridge", "exitCode": True}]}, "ECS stopped it"),
        (
            {"stopCode": "ServiceSchedulerInitiated", "containers": [{"name": "bridge", "exitCode": 2}]},
            "ECS stopped it (ServiceSchedulerInitiated)",
        ),
        ({"stopCode": "ServiceSchedulerInitiated", "stoppedReason": "Scaling down"}, "Scaling down"),
        ({"stoppedReason": "x" * 400}, "x" * 300),
        ({}, "ECS stopped it"),
    ],
)
def test_every_kind_of_stop_has_its_own_words(detail: dict[str, Any], expected: str) -> None:
    # Given / When a stop ECS describes this way is put in words
    text = task_events.stop_reason({"lastStatus": "STOPPED", **detail})

    # Then the user reads what happened, in ECS's own words where it gave some
    assert text == expected


def test_stop_reason_of_a_failed_pull_names_the_error() -> None:
    # Given / When
    text = task_events.stop_reason(_detail(FAILED, "arn:task"))

    # Then
    assert text.startswith("the task failed to start (CannotPullContainerError")
    assert len(text) < 400


# --- The Lambda handler ----------------------------------------------------------------------------


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.task_events.app")
    monkeypatch.setattr(module, "plane", cp)
    return module


def test_handler_reconciles_a_spot_interruption(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    # Given a running agent with a waiting message
    task = running(cp)
    queue(cp, "hello")

    # When EventBridge delivers the Spot interruption
    result = app.lambda_handler(stopped_event(SPOT, task), lambda_context)

    # Then the row is released and the message gets a new on-demand task
    assert result["ignored"] is False and result["restarted"] is True
    assert launcher.launched[-1] == (USER, Capacity.ON_DEMAND)
    assert cp.task_state.get(USER).status is Status.STARTING


@pytest.mark.parametrize("name", [FAILED, EXITED])
def test_handler_settles_failed_starts_and_exits(
    app: ModuleType, cp: ControlPlane, name: str, lambda_context: Any
) -> None:
    # Given a starting agent
    task = starting(cp)

    # When its STOPPED event arrives
    result = app.lambda_handler(stopped_event(name, task), lambda_context)

    # Then the row is Idle with the failed attempt counted
    assert result["reconciled"] is True and result["failed_start"] is True
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.start_attempts == 1


def test_handler_ignores_other_clusters_and_other_states(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a running agent
    task = running(cp)
    before = cp.task_state.get(USER)
    other_cluster = stopped_event(
        SPOT, task, cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/someone-elses-cluster"
    )
    still_running = stopped_event(SPOT, task)
    still_running["detail"]["lastStatus"] = "DEACTIVATING"

    # When an event for another cluster and one that is neither STOPPED nor able to carry a pull arrive
    # (RUNNING and the like are the pull's: tests/unit/test_task_pulling.py)
    results = [app.lambda_handler(e, lambda_context) for e in (other_cluster, still_running)]

    # Then both are ignored and the agent keeps running
    assert results == [{"ignored": True}, {"ignored": True}]
    assert cp.task_state.get(USER) == before


def test_handler_ignores_the_sample_event_of_another_stack(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a running agent
    running(cp)
    before = cp.task_state.get(USER)

    # When the sample event (a different stack's cluster) arrives unmodified
    result = app.lambda_handler(load_event(SPOT), lambda_context)

    # Then nothing changes
    assert result == {"ignored": True}
    assert cp.task_state.get(USER) == before


@pytest.mark.parametrize(
    ("cluster", "arn", "ours"),
    [
        ("test-cluster", "arn:aws:ecs:us-east-1:123456789012:cluster/test-cluster", True),
        (
            "arn:aws:ecs:us-east-1:123456789012:cluster/test-cluster",
            "arn:aws:ecs:us-east-1:123456789012:cluster/test-cluster",
            True,
        ),
        ("test-cluster", "arn:aws:ecs:us-east-1:123456789012:cluster/not-test-cluster", False),
        ("test-cluster", None, False),
    ],
)
def test_cluster_match(cluster: str, arn: str | None, ours: bool) -> None:
    # Given / When / Then: a name or an ARN matches exactly its own cluster
    assert task_events.is_our_cluster(arn, cluster) is ours


def test_message_queued_while_a_bridge_released_its_own_row_is_served(
    cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher
) -> None:
    # Given a bridge that stopped on its own: it set its row Idle on SIGTERM (as it does) before exiting,
    # and a message arrived while it was shutting down
    task = running(cp)
    state = cp.task_state.get(USER)
    assert cp.task_state.transition(state, Status.IDLE, cp.clock(), remove=LIVE_TASK_ATTRIBUTES)
    queue(cp, "sent during shutdown")
    client(cp, "tab-1")

    # When its STOPPED event arrives (the row no longer references the task)
    outcome = task_events.on_task_stopped(cp, _detail(EXITED, task))

    # Then the row is not reconciled again, but the waiting message gets a new agent right away
    assert not outcome.reconciled
    assert len(launcher.launched) == 2
    assert cp.task_state.get(USER).status is Status.STARTING
    assert pusher.frames("tab-1", "status")[-1]["status"] == "starting"
