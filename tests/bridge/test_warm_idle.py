"""A task woken without a message stops itself once the warm idle timeout passes with none, and keeps
running when a message comes (bridge/warm_idle.py against TaskState in moto)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.warm_idle import WarmIdle
from serverless_openclaw import routing
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.messages import IncomingMessage
from tests.fakes import Clock

USER = "user-a"


class _Task:
    """What the bridge gives the rule: whether a run is going, where status frames go, how it stops."""

    def __init__(self) -> None:
        self.busy = False
        self.told: list[dict[str, object]] = []
        self.stops = 0

    async def tell(self, frame: dict[str, object]) -> None:
        self.told.append(frame)

    def stop(self) -> None:
        self.stops += 1


def _woken_and_running(cp: ControlPlane) -> str:
    """The chat opened (warm), the task came up and says Running; its ARN."""
    assert routing.wake_on_intent(cp, USER).wake == "started"
    task_arn = cp.task_state.get(USER).task_arn or ""
    assert cp.task_state.settle_own(USER, task_arn, Status.RUNNING, cp.clock(), from_=(Status.STARTING,))
    return task_arn


def _rule(cp: ControlPlane, task_arn: str, task: _Task, minutes: float = 3) -> WarmIdle:
    return WarmIdle(
        cp.task_state,
        USER,
        task_arn,
        minutes,
        clock=cp.clock,
        busy=lambda: task.busy,
        tell=task.tell,
        stop=task.stop,
    )


def _message(cp: ControlPlane, text: str) -> None:
    """The person writes to their (heartbeating) agent."""
    state = cp.task_state.get(USER)
    assert cp.task_state.heartbeat(USER, state.task_arn or "", False, cp.clock())
    routing.accept_message(
        cp, IncomingMessage(user_id=USER, text=text, channel="web", conversation_id="conv-1")
    )


async def test_a_woken_task_nobody_writes_to_stops_itself_after_the_warm_timeout(
    cp: ControlPlane, clock: Clock
) -> None:
    # Given a task woken by the chat opening, Running for a little under its 3-minute warm timeout
    task_arn = _woken_and_running(cp)
    task = _Task()
    rule = _rule(cp, task_arn, task)
    clock.advance(170)

    # When the rule looks (just before, then just after the timeout)
    wait = await rule.check()
    clock.advance(15)
    done = await rule.check()

    # Then it first waits for the rest of the timeout, then moves the row to Stopping, tells the tabs and
    # ends the process the graceful way (which releases the row to Idle)
    assert wait is not None and 10 <= wait <= 11
    assert done is None and task.stops == 1 and task.told == [{"type": "status", "status": "stopping"}]
    assert cp.task_state.get(USER).status is Status.STOPPING


async def test_a_message_makes_it_an_ordinary_task_the_rule_stops_watching(
    cp: ControlPlane, clock: Clock
) -> None:
    task_arn = _woken_and_running(cp)
    task = _Task()
    clock.advance(60)
    _message(cp, "hello")
    clock.advance(600)
    assert await _rule(cp, task_arn, task).check() is None
    assert task.stops == 0 and cp.task_state.get(USER).status is Status.RUNNING


async def test_a_message_landing_between_the_look_and_the_stop_keeps_the_task(
    cp: ControlPlane, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a woken task past its timeout, and a message that lands right after the rule read the row
    task_arn = _woken_and_running(cp)
    task = _Task()
    clock.advance(300)
    read = cp.task_state.get

    def read_then_message(user_id: str, **kw: Any) -> TaskState:
        state = read(user_id, **kw)
        monkeypatch.undo()
        _message(cp, "wait, I am here")
        return state

    monkeypatch.setattr(cp.task_state, "get", read_then_message)

    # When the rule tries to stop
    again = await _rule(cp, task_arn, task).check()

    # Then the conditional stop is refused: the task stays Running to answer the message
    assert again == 1.0 and task.stops == 0
    assert cp.task_state.get(USER).status is Status.RUNNING


async def test_a_task_answering_is_not_stopped_and_a_task_of_another_row_is_left_alone(
    cp: ControlPlane, clock: Clock
) -> None:
    task_arn = _woken_and_running(cp)
    task = _Task()
    task.busy = True
    clock.advance(600)
    assert await _rule(cp, task_arn, task).check() == 1.0
    assert await _rule(cp, "arn:aws:ecs:us-east-1:123456789012:task/other", _Task()).check() is None
    assert task.stops == 0 and cp.task_state.get(USER).status is Status.RUNNING
