"""Wake on intent: a `warm` frame starts the agent exactly as a message would (once, whatever the number
of frames), an agent woken without a message stops after the short warm idle timeout unless one comes,
and a user can turn it off."""

from __future__ import annotations

import importlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import lifecycle, routing, settings, watchdog
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.store.task_state import TaskStateStore
from tests.conftest import load_event
from tests.fakes import Clock, FakeLauncher, RecordingPusher
from tests.unit.conftest_agents import USER

TAB = "Aa1bCdEfIAMCJ3Q="
MINUTE = 60.0


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.ws_message.app")
    monkeypatch.setattr(module, "plane", cp)
    monkeypatch.setattr(module, "connections", module.ConnectionCache())
    cp.connections.put(Connection(TAB, USER, "client", cp.clock()))
    return module


def _frame(app: ModuleType, lambda_context: Any, body: dict[str, Any]) -> dict[str, Any]:
    event = load_event("ws_message_send_message.json")
    event["requestContext"]["connectionId"] = TAB  # type: ignore[index]
    event["body"] = json.dumps(body)
    response = app.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    reply: dict[str, Any] = json.loads(response["body"])
    return reply


def _warm(app: ModuleType, lambda_context: Any) -> dict[str, Any]:
    return _frame(app, lambda_context, {"action": "warm"})


def _come_up(cp: ControlPlane) -> str:
    """The started task's bridge reports Running (as settle_own does); its task ARN."""
    state = cp.task_state.get(USER)
    assert state.task_arn
    assert cp.task_state.settle_own(
        USER,
        state.task_arn,
        Status.RUNNING,
        cp.clock(),
        from_=(Status.STARTING,),
        set_={"heartbeatAt": cp.clock(), "startAttempts": 0},
    )
    return state.task_arn


def _quiet_for(cp: ControlPlane, clock: Clock, seconds: float, task: str) -> None:
    """Time passes; the bridge keeps heartbeating, nobody writes."""
    passed = 0.0
    while passed < seconds:
        step = min(30.0, seconds - passed)
        clock.advance(step)
        passed += step
        cp.task_state.heartbeat(USER, task, False, cp.clock())


# ------------------------------------------------------------------------------------ the warm frame


def test_opening_the_chat_of_an_idle_agent_starts_it_as_a_message_would_marked_as_woken(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, pusher: RecordingPusher, lambda_context: Any
) -> None:
    # Given an idle agent and a tab that just opened
    # When the tab says someone is about to talk
    reply = _warm(app, lambda_context)

    # Then one task starts on Spot, the reply (the one frame this frame gets) says so with an ETA, the tabs
    # are told "starting", and the row remembers it was woken without a message
    assert reply == {
        "type": "status",
        "status": "starting",
        "phase": "provisioning",
        "etaSeconds": cp.cfg.lifecycle.start_eta_seconds,
        "wake": "started",
    }
    assert launcher.launched == [(USER, lifecycle.Capacity.SPOT)]
    assert pusher.frames(TAB, "status")[-1]["status"] == "starting"
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.warm_since == cp.clock()
    assert cp.inbox.items(USER) == []


def test_when_spot_has_no_capacity_a_warm_start_falls_back_to_on_demand(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    launcher.spot_full = True
    assert _warm(app, lambda_context)["wake"] == "started"
    assert launcher.launched == [(USER, lifecycle.Capacity.ON_DEMAND)]


def test_ten_warm_frames_in_a_second_start_the_agent_once(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, clock: Clock, lambda_context: Any
) -> None:
    # Given an idle agent
    # When ten warm frames arrive within a second (tabs, focus, typing)
    replies = []
    for _ in range(10):
        replies.append(_warm(app, lambda_context))
        clock.advance(0.1)

    # Then exactly one task started, and every other frame was told it is already starting
    assert len(launcher.launched) == 1
    assert [r["wake"] for r in replies] == ["started"] + ["awake"] * 9
    assert {r["status"] for r in replies} == {"starting"}
    assert cp.task_state.get(USER).version == 1


class _RacingTaskState(TaskStateStore):
    """TaskState as ten Lambdas see it at once: every read happens before any write (they meet at a
    barrier), and writes to the one row are applied one at a time, as DynamoDB does."""

    def __init__(self, table: str, parties: int) -> None:
        super().__init__(table)
        self.barrier = threading.Barrier(parties, timeout=10)
        self.lock = threading.Lock()

    def get(self, user_id: str, *, consistent: bool = True) -> TaskState:
        state = super().get(user_id, consistent=consistent)
        if state.status is Status.IDLE:
            self.barrier.wait()
        return state

    def transition(self, current: TaskState, to: Status, now: float, **kw: Any) -> TaskState | None:
        with self.lock:
            return super().transition(current, to, now, **kw)

    def record_launch(self, state: TaskState, task_arn: str, capacity: lifecycle.Capacity) -> bool:
        with self.lock:
            return super().record_launch(state, task_arn, capacity)


def test_ten_concurrent_warm_frames_that_all_saw_the_agent_idle_start_it_once(
    cp: ControlPlane, launcher: FakeLauncher
) -> None:
    # Given ten warm frames handled at the same moment, each having read the row as Idle
    cp.task_state = _RacingTaskState(cp.task_state.table, 10)

    # When each decides to start the agent
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(lambda _: routing.wake_on_intent(cp, USER), range(10)))

    # Then one conditional write won: one RunTask, one "started", nine told it is already starting
    assert len(launcher.launched) == 1
    assert sorted(o.wake for o in outcomes) == ["awake"] * 9 + ["started"]
    assert {o.status["status"] for o in outcomes} == {"starting"}


@pytest.mark.parametrize("up", [False, True], ids=["starting", "running"])
def test_a_warm_frame_while_the_agent_is_up_only_answers_its_status(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any, up: bool
) -> None:
    # Given an agent a message started (starting, or already running)
    _frame(app, lambda_context, {"action": "sendMessage", "message": "hi", "clientMessageId": "c1"})
    if up:
        _come_up(cp)
    before = cp.task_state.get(USER)

    # When a warm frame comes
    reply = _warm(app, lambda_context)

    # Then nothing changes: no task, no write, no warm mark; the reply is the status
    assert reply["type"] == "status" and reply["wake"] == "awake"
    assert reply["status"] == ("running" if up else "starting")
    assert len(launcher.launched) == 1
    after = cp.task_state.get(USER)
    assert after == before and after.warm_since is None


def test_a_user_who_turned_wake_on_intent_off_starts_nothing_and_is_told_so(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    # Given a user who turned the setting off
    cp.settings.put(USER, settings.validate({"wakeOnIntent": False}), cp.clock())

    # When the chat opens
    reply = _warm(app, lambda_context)

    # Then nothing starts, and the reply says wake on intent is off
    assert reply == {"type": "status", "status": "idle", "wake": "off"}
    assert launcher.launched == [] and cp.task_state.get(USER).status is Status.IDLE


def test_after_failed_starts_a_warm_frame_waits_for_a_message_instead_of_trying_again(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    # Given an agent whose last starts all failed
    launcher.fail_with = "no capacity in any subnet"
    for _ in range(cp.cfg.lifecycle.max_start_attempts):
        assert _warm(app, lambda_context)["wake"] == "failed"
    launcher.fail_with = None

    # When the composer is focused again
    reply = _warm(app, lambda_context)

    # Then no new task is tried (a message would), and the reply says why
    assert reply["wake"] == "held" and reply["lastError"] == "no capacity in any subnet"
    assert launcher.launched == []


def test_a_message_sent_during_the_warm_start_is_answered_by_that_task_and_clears_the_mark(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    # Given an agent woken by the chat opening, still starting
    _warm(app, lambda_context)
    task = cp.task_state.get(USER).task_arn

    # When the person sends their message
    ack = _frame(app, lambda_context, {"action": "sendMessage", "message": "hello", "clientMessageId": "c1"})

    # Then it waits for that same task (no second one) and the agent is no longer "woken without a
    # message": the user's normal idle timeout applies to it from now on
    assert ack["type"] == "ack" and ack["status"] == "starting"
    assert len(launcher.launched) == 1
    state = cp.task_state.get(USER)
    assert state.task_arn == task and state.warm_since is None
    (queued,) = cp.inbox.pending(USER, cp.clock())
    assert queued.text == "hello"


# ------------------------------------------------------------------------------------ the short timeout


def test_a_woken_agent_nobody_writes_to_is_stopped_after_the_warm_timeout_not_the_idle_one(
    app: ModuleType,
    cp: ControlPlane,
    launcher: FakeLauncher,
    pusher: RecordingPusher,
    clock: Clock,
    lambda_context: Any,
) -> None:
    # Given an agent woken by the chat opening, up and running (last message: an hour ago)
    cp.task_state.touch_activity(USER, cp.clock() - 3600)
    _warm(app, lambda_context)
    clock.advance(40)
    task = _come_up(cp)
    warm_minutes = cp.cfg.lifecycle.warm_idle_timeout_minutes

    # When the watchdog sweeps just inside the warm timeout (counted from Running), then just after it
    _quiet_for(cp, clock, warm_minutes * MINUTE - 5, task)
    kept = watchdog.sweep(cp)
    _quiet_for(cp, clock, 10, task)
    actions = watchdog.sweep(cp)

    # Then it was kept, then stopped as woken without a message, and the tabs were told
    assert kept == []
    assert actions == [watchdog.Action(USER, task, "stop_warm", "woken without a message")]
    assert launcher.stopped == [(task, "woken without a message")]
    assert cp.task_state.get(USER).status is Status.STOPPING
    assert pusher.frames(TAB, "status")[-1]["status"] == "stopping"


def test_a_woken_agent_that_got_a_message_follows_the_users_idle_timeout(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, clock: Clock, lambda_context: Any
) -> None:
    # Given an agent woken by the chat opening, running, then written to
    _warm(app, lambda_context)
    task = _come_up(cp)
    _frame(app, lambda_context, {"action": "sendMessage", "message": "hi", "clientMessageId": "c1"})

    # When it stays quiet longer than the warm timeout but less than the idle timeout
    _quiet_for(cp, clock, (cp.cfg.lifecycle.warm_idle_timeout_minutes + 2) * MINUTE, task)

    # Then it keeps running; past the idle timeout it stops as any agent does
    assert watchdog.sweep(cp) == []
    _quiet_for(cp, clock, cp.cfg.lifecycle.idle_timeout_minutes * MINUTE, task)
    assert [a.action for a in watchdog.sweep(cp)] == ["stop_idle"]


def test_a_message_that_lands_between_the_watchdogs_read_and_its_stop_keeps_the_agent(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, clock: Clock, lambda_context: Any
) -> None:
    # Given a woken agent past its warm timeout, as the watchdog read it
    _warm(app, lambda_context)
    task = _come_up(cp)
    _quiet_for(cp, clock, (cp.cfg.lifecycle.warm_idle_timeout_minutes + 1) * MINUTE, task)
    seen = cp.task_state.get(USER)
    assert lifecycle.watchdog_verdict(seen, cp.clock(), cp.cfg.lifecycle, 15) is lifecycle.Verdict.STOP_WARM

    # When a message lands before the stop is written
    _frame(app, lambda_context, {"action": "sendMessage", "message": "wait!", "clientMessageId": "c1"})

    # Then the stop is refused and the task stays to answer it
    assert routing.stop_unused_warm(cp, seen) is None
    assert launcher.stopped == []
    assert cp.task_state.get(USER).status is Status.RUNNING


def test_a_running_agent_started_by_a_message_is_never_judged_by_the_warm_timeout(cp: ControlPlane) -> None:
    # Given a Running row without the warm mark, quiet for longer than the warm timeout
    now = 1_800_000_000.0
    state = TaskState(USER, Status.RUNNING, 3, "t", heartbeat_at=now, last_activity=now - 10 * MINUTE)

    # Then neither rule stops it before the user's idle timeout
    assert not lifecycle.warm_expired(state, now, cp.cfg.lifecycle)
    assert lifecycle.watchdog_verdict(state, now, cp.cfg.lifecycle, 15) is lifecycle.Verdict.KEEP


# ------------------------------------------------------------------------------------ the setting


@pytest.mark.parametrize("value", ["false", 0, None, "off"])
def test_the_wake_on_intent_setting_is_true_or_false(value: Any) -> None:
    with pytest.raises(settings.InvalidSettings) as refused:
        settings.validate({"wakeOnIntent": value})
    assert refused.value.problems == {"wakeOnIntent": "must be true or false"}


def test_wake_on_intent_is_on_unless_turned_off() -> None:
    assert settings.defaults(15)["wakeOnIntent"] is True
    assert settings.wake_on_intent_for(None) and settings.wake_on_intent_for(True)
    assert not settings.wake_on_intent_for(False)


def test_turning_it_back_on_lets_the_next_warm_frame_start_the_agent(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    cp.settings.put(USER, {"wakeOnIntent": False}, cp.clock())
    assert _warm(app, lambda_context)["wake"] == "off"
    cp.settings.put(USER, {"wakeOnIntent": True}, cp.clock() + 1)
    assert _warm(app, lambda_context)["wake"] == "started"
    assert len(launcher.launched) == 1


def test_a_warm_frame_from_an_agent_connection_is_refused(cp: ControlPlane) -> None:
    from serverless_openclaw.websocket import ConnectionCache, handle_frame

    cp.connections.put(Connection("agent-1", USER, "agent", cp.clock(), task_arn="t"))
    reply = handle_frame(cp, ConnectionCache(), "agent-1", json.dumps({"action": "warm"}))
    assert reply["type"] == "error" and reply["code"] == "unknown_action"
    assert cp.task_state.get(USER).status is Status.IDLE
