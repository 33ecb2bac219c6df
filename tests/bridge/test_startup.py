"""The start-up as the user sees it from the bridge: each phase's ETA from the user's own recent starts,
the same in Telegram's waiting message, and this start's phases measured for the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.startup import Progress, StartClock
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.messages import InboxItem
from tests.fakes import Clock

USER = "user-a"
HISTORY = (
    {"provisioning": 20.0, "restoring": 4.0, "booting": 10.0},
    {"provisioning": 24.0, "restoring": 6.0, "booting": 14.0},
)


@dataclass
class Tabs:
    frames: list[Mapping[str, Any]] = field(default_factory=list)

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        self.frames.append(frame)


@dataclass
class WaitingMessages:
    texts: list[str] = field(default_factory=list)

    async def progress(self, items: Iterable[InboxItem], text: str) -> int:
        self.texts.append(text)
        return len(list(items))


@dataclass
class Delivery:
    tabs: Tabs
    telegram: WaitingMessages

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        await self.tabs.notice(user_id, frame)


class Inbox:
    def pending(self, user_id: str, now: float) -> list[InboxItem]:
        return [InboxItem(USER, "m1", "hi", "telegram", "c1", created_at=1.0)]


def test_each_phase_is_told_with_the_eta_of_the_users_own_starts_on_the_web_and_on_telegram() -> None:
    # Given a start asked for 22 s before the bridge ran, by a user with two recent starts
    clock = Clock()
    start = StartClock(clock, default_seconds=45)
    start.read(TaskState(USER, Status.STARTING, started_at=clock() - 22, recent_starts=HISTORY))
    tabs, telegram, recorded = Tabs(), WaitingMessages(), []
    progress = Progress(Delivery(tabs, telegram), Inbox(), USER, clock)  # type: ignore[arg-type]

    async def scenario() -> None:
        # When the bridge enters restoring, then booting 4 s later
        progress.enter(start, "restoring", lambda: recorded.append("restoring"))
        clock.advance(4)
        progress.enter(start, "booting", lambda: recorded.append("booting"))
        await progress.settled()

    asyncio.run(scenario())

    # Then each phase was recorded before it was told, and told with its ETA from the medians (5 + 12 s,
    # then 12 s), the user's usual start (39 s) and the time so far
    assert recorded == ["restoring", "booting"]
    assert tabs.frames == [
        {
            "type": "status",
            "status": "starting",
            "phase": "restoring",
            "etaSeconds": 17,
            "usualSeconds": 39,
            "elapsedSeconds": 22,
        },
        {
            "type": "status",
            "status": "starting",
            "phase": "booting",
            "etaSeconds": 12,
            "usualSeconds": 39,
            "elapsedSeconds": 26,
        },
    ]
    # And Telegram's waiting message said the same, in words
    assert telegram.texts == [
        "⏳ Waking up your agent: restoring your files (about 17 s left)…",
        "⏳ Waking up your agent: starting OpenClaw (about 12 s left)…",
    ]
    # And once Running (10 s later), this start's phases are what the next ETA is made of
    clock.advance(10)
    assert start.durations() == {"provisioning": 22.0, "restoring": 4.0, "booting": 10.0}


def test_a_phase_that_could_not_be_recorded_is_still_told() -> None:
    # Given a TaskState write that fails (throttled, say)
    clock = Clock()
    start = StartClock(clock, default_seconds=45)
    tabs = Tabs()
    progress = Progress(Delivery(tabs, WaitingMessages()), Inbox(), USER, clock)  # type: ignore[arg-type]

    def fails() -> None:
        raise ConnectionError("DynamoDB unreachable")

    async def scenario() -> None:
        progress.enter(start, "restoring", fails)
        await progress.settled()

    asyncio.run(scenario())

    # Then the tabs still hear of it, with the stack default split over the phases (no history)
    assert [(f["phase"], f["etaSeconds"], f["usualSeconds"]) for f in tabs.frames] == [("restoring", 29, 45)]


def test_a_pull_ecs_reported_in_time_is_its_own_phase_in_the_next_starts_history() -> None:
    # Given a start asked for 30 s before the bridge ran, whose row task_events moved to pulling 12 s in
    clock = Clock()
    start = StartClock(clock, default_seconds=45)
    asked = clock() - 30
    start.read(TaskState(USER, Status.STARTING, started_at=asked, start_phase="pulling", phase_at=asked + 12))

    # When the bridge restores for 3 s, boots for 9 s and is Running
    start.enter("restoring")
    clock.advance(3)
    start.enter("booting")
    clock.advance(9)

    # Then provisioning ended where the pull began, and the pull ran until the bridge did
    assert start.durations() == {"provisioning": 12.0, "pulling": 18.0, "restoring": 3.0, "booting": 9.0}


def test_a_pull_reported_too_late_or_by_a_wrong_clock_stays_inside_provisioning() -> None:
    # Given rows whose pull start is unknown, or later than the bridge's own start (clocks disagree)
    clock = Clock()
    asked = clock() - 30
    rows = [
        TaskState(USER, Status.STARTING, started_at=asked),
        TaskState(USER, Status.STARTING, started_at=asked, start_phase="pulling", phase_at=clock() + 5),
    ]
    for row in rows:
        start = StartClock(clock, default_seconds=45)
        start.read(row)

        # When the bridge restores and boots
        start.enter("restoring")
        start.enter("booting")

        # Then the whole wait before the bridge ran is provisioning, as before pulls were reported
        assert start.durations() == {"provisioning": 30.0, "restoring": 0.0, "booting": 0.0}
