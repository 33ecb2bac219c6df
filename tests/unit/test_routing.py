"""What happens to a user message: stored first, then exactly one agent per user."""

from __future__ import annotations

import pytest

from serverless_openclaw import routing
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.messages import IncomingMessage
from tests.fakes import Clock, FakeLauncher, RecordingPusher

USER = "user-a"


def _message(text: str, key: str | None = None, user: str = USER) -> IncomingMessage:
    return IncomingMessage(
        user_id=user,
        text=text,
        channel="web",
        conversation_id="conv-1",
        idempotency_key=f"web#{user}#{key}" if key else None,
        client_message_id=key,
    )


def _client(cp: ControlPlane, connection_id: str, user: str = USER) -> None:
    cp.connections.put(Connection(connection_id, user, "client", cp.clock()))


def _make_running(cp: ControlPlane, agent_connection: str = "agent-conn") -> str:
    outcome = routing.start_agent(cp, cp.task_state.get(USER), reason="test")
    assert outcome.task_arn
    state = cp.task_state.get(USER)
    running = cp.task_state.transition(state, Status.RUNNING, cp.clock(), set_={"startAttempts": 0})
    assert running is not None
    assert cp.task_state.attach_agent(USER, outcome.task_arn, agent_connection, cp.clock())
    cp.connections.put(Connection(agent_connection, USER, "agent", cp.clock(), task_arn=outcome.task_arn))
    return outcome.task_arn


def test_two_simultaneous_messages_start_exactly_one_task(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given two messages for an idle user, both stored and both having read the Idle state
    first = cp.intake.accept(_message("one", "c1"), cp.clock())
    second = cp.intake.accept(_message("two", "c2"), cp.clock())
    seen_by_first = cp.task_state.touch_activity(USER, cp.clock())
    seen_by_second = cp.task_state.touch_activity(USER, cp.clock())
    assert seen_by_first.status is seen_by_second.status is Status.IDLE

    # When both decide what to do with the agent at the same moment
    statuses = {routing.ensure_agent(cp, seen_by_first), routing.ensure_agent(cp, seen_by_second)}

    # Then ECS got exactly one RunTask, the row is Starting once, and both messages wait in the Inbox
    assert len(launcher.launched) == 1
    assert statuses == {"starting"}
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.version == 1 and state.task_arn
    pending = cp.inbox.pending(USER, cp.clock())
    assert [i.message_id for i in pending] == sorted([first.message_id, second.message_id])

    # And the one task answers both, one after the other, in the order they were sent
    answered = []
    while (item := cp.inbox.claim_next(USER, state.task_arn, cp.clock(), 120)) is not None:
        answered.append(item.text)
        assert cp.inbox.complete(item, state.task_arn)
    assert answered == ["one", "two"]


def test_message_is_stored_before_the_agent_is_started(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given ECS refuses every start
    launcher.fail_with = "ECS refused to start the agent (AccessDeniedException: not allowed)"
    _client(cp, "tab-1")

    # When a message arrives
    accepted, status = routing.accept_message(cp, _message("keep me", "c1"))

    # Then the message is in the history and still queued, the row is not left Starting, the user is told
    assert status == "idle"
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["keep me"]
    history = cp.conversations.messages(USER, "conv-1").items
    assert [m["content"] for m in history] == ["keep me"]
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.start_attempts == 1
    assert state.last_error and "AccessDenied" in state.last_error
    errors = cp.pusher.frames("tab-1", "error")  # type: ignore[attr-defined]
    assert errors and errors[0]["code"] == "start_failed" and "kept" in errors[0]["error"]
    assert accepted.message_id


def test_spot_capacity_error_falls_back_to_on_demand(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given Fargate Spot has no capacity
    launcher.spot_full = True

    # When a message starts the agent
    _, status = routing.accept_message(cp, _message("hi", "c1"))

    # Then a task runs on FARGATE and the row records it
    assert status == "starting"
    assert launcher.launched == [(USER, Capacity.ON_DEMAND)]
    assert cp.task_state.get(USER).capacity is Capacity.ON_DEMAND


def test_duplicate_client_message_id_is_stored_once(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given a message already accepted
    first, _ = routing.accept_message(cp, _message("once", "same-id"))

    # When the client retries it with the same clientMessageId
    again, _ = routing.accept_message(cp, _message("once", "same-id"))

    # Then it is acknowledged with the original ids and stored only once
    assert again.duplicate and again.message_id == first.message_id
    assert again.conversation_id == first.conversation_id
    assert len(cp.inbox.pending(USER, cp.clock())) == 1
    assert len(cp.conversations.messages(USER, "conv-1").items) == 1
    assert len(launcher.launched) == 1


def test_running_agent_is_nudged_not_restarted(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given a running agent with a live agent connection
    _make_running(cp)

    # When a message arrives
    _, status = routing.accept_message(cp, _message("hello", "c9"))

    # Then the bridge got a nudge and no second task was started
    assert status == "running"
    assert launcher.launched == [(USER, Capacity.SPOT)]
    assert cp.pusher.frames("agent-conn") == [{"type": "nudge"}]  # type: ignore[attr-defined]


def test_nudge_to_a_gone_agent_connection_keeps_the_message(
    cp: ControlPlane, pusher: RecordingPusher
) -> None:
    # Given a running agent whose WebSocket went away without a $disconnect
    _make_running(cp)
    pusher.gone.add("agent-conn")

    # When a message arrives
    _, status = routing.accept_message(cp, _message("still there?", "c2"))

    # Then the message waits for the bridge to reconnect and drain, and the dead connection is forgotten
    assert status == "running"
    assert cp.task_state.get(USER).agent_connection_id is None
    assert cp.connections.get("agent-conn") is None
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["still there?"]


def test_stale_running_agent_is_replaced(cp: ControlPlane, launcher: FakeLauncher, clock: Clock) -> None:
    # Given a Running row whose bridge stopped heartbeating long ago
    old_task = _make_running(cp)
    clock.advance(cp.cfg.lifecycle.heartbeat_stale_seconds + 1)

    # When a message arrives
    _, status = routing.accept_message(cp, _message("anyone?", "c3"))

    # Then the old task is stopped and a new one starts
    assert status == "starting"
    assert (old_task, "replaced (message)") in launcher.stopped
    assert len(launcher.launched) == 2
    assert cp.task_state.get(USER).task_arn != old_task


def test_message_during_start_waits(cp: ControlPlane, launcher: FakeLauncher, clock: Clock) -> None:
    # Given an agent that started 10 s ago
    routing.accept_message(cp, _message("first", "c1"))
    clock.advance(10)

    # When another message arrives
    _, status = routing.accept_message(cp, _message("second", "c2"))

    # Then nothing new is started and the client learns it is starting
    assert status == "starting"
    assert len(launcher.launched) == 1


def test_overdue_start_is_replaced_by_a_new_one(
    cp: ControlPlane, launcher: FakeLauncher, clock: Clock
) -> None:
    # Given a start that never heartbeated before the deadline
    routing.accept_message(cp, _message("first", "c1"))
    clock.advance(cp.cfg.lifecycle.start_deadline_seconds + 1)

    # When a message arrives
    routing.accept_message(cp, _message("second", "c2"))

    # Then a second task is started and the first one is stopped
    assert len(launcher.launched) == 2
    assert len(launcher.stopped) == 1


def test_starting_status_is_pushed_to_every_client_with_an_eta(cp: ControlPlane) -> None:
    # Given two tabs of the same user and one of another user
    _client(cp, "tab-1")
    _client(cp, "tab-2")
    _client(cp, "other", user="user-b")

    # When a message starts the agent
    routing.accept_message(cp, _message("hi", "c1"))

    # Then both tabs see "starting" with an ETA, the other user sees nothing
    for tab in ("tab-1", "tab-2"):
        frames = cp.pusher.frames(tab, "status")  # type: ignore[attr-defined]
        assert frames[-1]["status"] == "starting" and frames[-1]["etaSeconds"] == 45
    assert cp.pusher.frames("other") == []  # type: ignore[attr-defined]


def test_request_stop_stops_the_task_and_reports_stopping(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given a running agent
    task = _make_running(cp)

    # When the user stops it
    status = routing.request_stop(cp, USER)

    # Then ECS is asked to stop it and the row is Stopping until the STOPPED event
    assert status == "stopping"
    assert launcher.stopped[-1][0] == task
    assert cp.task_state.get(USER).status is Status.STOPPING


def test_request_stop_when_task_already_gone_settles_idle(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given a Running row whose task ECS no longer knows
    task = _make_running(cp)
    launcher.live.discard(task)

    # When the user stops it
    status = routing.request_stop(cp, USER)

    # Then nothing will send a STOPPED event, so the row is settled Idle at once
    assert status == "idle"
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.task_arn is None


def test_request_start_when_idle_and_when_running(cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given an idle user
    # When they ask for their agent twice
    first = routing.request_start(cp, USER)
    second = routing.request_start(cp, USER)

    # Then one task is started and the second request reports it starting
    assert first.started and first.status == "starting"
    assert not second.started and second.status == "starting"
    assert len(launcher.launched) == 1


def test_abort_reaches_the_running_agent_only(cp: ControlPlane) -> None:
    # Given no agent
    # When the user presses stop
    # Then there is nobody to ask
    assert routing.abort_reply(cp, USER, "conv-1") is False

    # Given a running agent
    _make_running(cp)
    # When the user presses stop
    assert routing.abort_reply(cp, USER, "conv-1") is True
    # Then the bridge receives an abort for that conversation
    assert cp.pusher.frames("agent-conn")[-1] == {"type": "abort", "conversationId": "conv-1"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyError("x")])
def test_unexpected_launcher_error_is_recorded_not_swallowed(
    cp: ControlPlane, launcher: FakeLauncher, failure: Exception
) -> None:
    # Given a launcher that fails in an unexpected way
    def explode(*_: object, **__: object) -> None:
        raise failure

    launcher.launch = explode  # type: ignore[method-assign,assignment]
    _client(cp, "tab-1")

    # When a message arrives
    _, status = routing.accept_message(cp, _message("hi", "c1"))

    # Then the user is told, the row is Idle with the reason, the message is still queued
    assert status == "idle"
    state = cp.task_state.get(USER)
    assert state.status is Status.IDLE and state.last_error and type(failure).__name__ in state.last_error
    assert cp.pusher.frames("tab-1", "error")[0]["code"] == "start_failed"  # type: ignore[attr-defined]
    assert len(cp.inbox.pending(USER, cp.clock())) == 1
