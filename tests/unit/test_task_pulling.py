"""ECS task changes before STOPPED: a start moves on to `pulling` when ECS says the image pull began, only
forward and only for the task the user's row names, and the user's tabs and Telegram are told."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import task_events
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.messages import IncomingMessage
from tests.conftest import load_event
from tests.fakes import RecordingPusher
from tests.unit.conftest_agents import USER, client, running, starting, stopped_event, telegram_waiting_note

PULL = "task_events_pull_started.json"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pull_event(task_arn: str, pulled_at: float, status: str = "PENDING") -> dict[str, Any]:
    event = stopped_event(PULL, task_arn)
    event["detail"]["pullStartedAt"] = _iso(pulled_at)
    event["detail"]["lastStatus"] = status
    return event


def _pull(cp: ControlPlane, task_arn: str, pulled_at: float) -> task_events.PullOutcome:
    return task_events.on_task_pulling(cp, _pull_event(task_arn, pulled_at)["detail"])


def test_the_sample_event_is_a_pending_change_whose_pull_began() -> None:
    # Given / When the documented sample of a pull that began
    detail: Any = load_event(PULL)["detail"]

    # Then it is PENDING, carries pullStartedAt as an ISO timestamp and no pullStoppedAt yet
    assert detail["lastStatus"] == "PENDING" and "pullStoppedAt" not in detail
    assert (
        task_events.event_time(detail["pullStartedAt"])
        == datetime(2026, 11, 22, 6, 10, 4, 210000, tzinfo=UTC).timestamp()
    )


def test_a_starting_agent_moves_on_to_pulling_and_its_tabs_are_told(
    cp: ControlPlane, pusher: RecordingPusher
) -> None:
    # Given a starting agent and an open tab; the pull began 6 s after RunTask, the event lands 2 s later
    task = starting(cp)
    client(cp, "tab-1")
    asked = cp.clock()
    cp.clock.advance(8)  # type: ignore[attr-defined]

    # When ECS reports the image pull began
    outcome = _pull(cp, task, asked + 6)

    # Then the row is pulling since the pull began, and the tab is told so with the time left
    assert outcome.pulling and outcome.task_arn == task
    state = cp.task_state.get(USER)
    assert state.status is Status.STARTING and state.start_phase == "pulling"
    assert state.phase_at == pytest.approx(asked + 6)
    frame = pusher.frames("tab-1", "status")[-1]
    assert frame["status"] == "starting" and frame["phase"] == "pulling"
    assert frame["elapsedSeconds"] == 8 and 1 <= frame["etaSeconds"] < frame["usualSeconds"]


@pytest.mark.parametrize("phase", ["restoring", "booting"])
def test_a_late_pending_after_the_bridge_entered_its_phase_changes_nothing(
    cp: ControlPlane, pusher: RecordingPusher, phase: str
) -> None:
    # Given a start whose bridge already runs and said which phase it is in
    task = starting(cp)
    client(cp, "tab-1")
    assert cp.task_state.enter_start_phase(USER, task, phase, cp.clock() + 20)
    before = cp.task_state.get(USER)
    frames = len(pusher.frames("tab-1", "status"))

    # When the PENDING change with the pull start arrives late
    outcome = _pull(cp, task, cp.clock() + 5)

    # Then the start does not go back to pulling, and the tab is told nothing
    assert not outcome.pulling
    assert cp.task_state.get(USER) == before and before.start_phase == phase
    assert len(pusher.frames("tab-1", "status")) == frames


def test_a_pull_of_a_task_the_row_does_not_name_changes_nothing(
    cp: ControlPlane, pusher: RecordingPusher
) -> None:
    # Given a starting agent, and an old task of the same user whose change arrives late
    starting(cp)
    before = cp.task_state.get(USER)

    # When the old task's pull start arrives
    outcome = _pull(cp, "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/old", cp.clock())

    # Then the start stays where it was
    assert not outcome.pulling and cp.task_state.get(USER) == before


def test_a_running_agent_and_a_change_without_a_pull_change_nothing(cp: ControlPlane) -> None:
    # Given a running agent, and a starting one of another user whose first PENDING has no pull yet
    task = running(cp)
    before = cp.task_state.get(USER)
    no_pull = _pull_event(task, cp.clock())["detail"]
    del no_pull["pullStartedAt"]

    # When a RUNNING change with its pull times, and a change without one, arrive
    outcomes = [
        task_events.on_task_pulling(cp, _pull_event(task, cp.clock() - 30, "RUNNING")["detail"]),
        task_events.on_task_pulling(cp, no_pull),
    ]

    # Then neither moves anything
    assert [o.pulling for o in outcomes] == [False, False]
    assert cp.task_state.get(USER) == before


def test_a_second_pull_event_of_the_same_start_changes_nothing(cp: ControlPlane) -> None:
    # Given a start already moved on to pulling
    task = starting(cp)
    assert _pull(cp, task, cp.clock() + 3).pulling
    before = cp.task_state.get(USER)

    # When the next change (pull stopped, or RUNNING) repeats the pull start
    again = _pull(cp, task, cp.clock() + 3)

    # Then the phase and its start stay
    assert not again.pulling and cp.task_state.get(USER) == before


def test_telegram_waiting_messages_name_the_pull(cp: ControlPlane) -> None:
    # Given a Telegram message waiting under its "waking up" note, and the bot's token in SSM
    token = "7000000002:pull-test-token"
    with telegram_waiting_note(cp, token) as (sim, note):
        cp.intake.accept(
            IncomingMessage(
                user_id=USER,
                text="hi",
                channel="telegram",
                conversation_id="conv-1",
                reply_to={"chatId": 42, "messageId": 7, "placeholderId": note},
            ),
            cp.clock(),
        )
        task = starting(cp)

        # When ECS reports the pull began
        assert _pull(cp, task, cp.clock()).pulling

    # Then the note (edited in place, no new message) says the agent is being fetched, with the time left
    assert len(sim.messages[42]) == 1 and sim.messages[42][0].message_id == note
    assert sim.chat(42)[0].startswith("⏳ Waking up your agent: fetching the agent (about ")


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.task_events.app")
    monkeypatch.setattr(module, "plane", cp)
    return module


def test_handler_moves_a_start_on_and_ignores_states_no_rule_sends(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a starting agent
    task = starting(cp)
    deactivating = _pull_event(task, cp.clock(), "DEACTIVATING")

    # When EventBridge delivers a state no rule takes, then the PENDING change with the pull start
    ignored = app.lambda_handler(deactivating, lambda_context)
    result = app.lambda_handler(_pull_event(task, cp.clock()), lambda_context)

    # Then the first is ignored and the second moves the start on
    assert ignored == {"ignored": True}
    assert result["ignored"] is False and result["pulling"] is True
    assert cp.task_state.get(USER).start_phase == "pulling"


def test_a_pull_event_that_outruns_the_recorded_launch_waits_for_it(cp: ControlPlane) -> None:
    # Given a row gone Starting whose RunTask answered but whose task is not recorded yet
    idle = cp.task_state.touch_activity(USER, cp.clock())
    launching = cp.task_state.transition(idle, Status.STARTING, cp.clock(), set_={"startedAt": cp.clock()})
    assert launching is not None and launching.task_arn is None
    task = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/fast"
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        # The launcher records its task while the event waits
        waits.append(seconds)
        assert cp.task_state.record_launch(launching, task, Capacity.SPOT)

    # When the event with the pull start arrives before that
    outcome = task_events.on_task_pulling(cp, _pull_event(task, cp.clock())["detail"], sleep=sleep)

    # Then it waited a moment once, and the start is pulling
    assert outcome.pulling and len(waits) == 1 and waits[0] < 1
    assert cp.task_state.get(USER).start_phase == "pulling"


def test_a_pull_event_for_a_row_that_never_names_it_gives_up_soon(cp: ControlPlane) -> None:
    # Given a Starting row that never records the event's task
    idle = cp.task_state.touch_activity(USER, cp.clock())
    assert cp.task_state.transition(idle, Status.STARTING, cp.clock()) is not None
    waits: list[float] = []

    # When the event arrives
    outcome = task_events.on_task_pulling(
        cp,
        _pull_event("arn:aws:ecs:us-east-1:123456789012:task/test-cluster/x", cp.clock())["detail"],
        sleep=waits.append,
    )

    # Then it waited about a second in all, and changed nothing
    assert not outcome.pulling and 0 < sum(waits) <= 1
    assert cp.task_state.get(USER).start_phase is None
