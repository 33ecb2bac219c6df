"""The bridge's start-up as the user and the operator see it: each phase timed, and progress shown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bridge.telegram_delivery import ChannelDelivery
from serverless_openclaw import protocol, start_estimate
from serverless_openclaw.lifecycle import TaskState
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.observability import logger
from serverless_openclaw.store.inbox import InboxStore


@dataclass
class Phases:
    """How long each start-up phase took (seconds), in order."""

    started: float = field(default_factory=time.monotonic)
    durations: dict[str, float] = field(default_factory=dict)
    current: str = "booting"

    @contextlib.asynccontextmanager
    async def timed(self, name: str) -> AsyncIterator[None]:
        """Time one phase and log it."""
        self.current = name
        t = time.monotonic()
        yield
        self.durations[name] = round(time.monotonic() - t, 3)
        logger.info("startup phase done", phase=name, seconds=self.durations[name])


class StartClock:
    """This start as the user sees it: the phase it is in, the seconds left by the user's own recent starts,
    and, once Running, how long each phase took (the history the next start's ETA is made of)."""

    def __init__(self, clock: Callable[[], float], default_seconds: float) -> None:
        self._clock = clock
        self.booted_at = clock()
        """When this process began: the end of provisioning (the machine found, the image pulled)."""
        self.started_at = self.booted_at
        self.pull_started_at: float | None = None
        """When ECS began pulling the image (the row's `pulling` phase, when task_events wrote it in time)."""
        self.history: tuple[dict[str, float], ...] = ()
        self.expected = start_estimate.estimate((), default_seconds)
        self._default_seconds = default_seconds
        self._entered: dict[str, float] = {}

    def read(self, state: TaskState) -> None:
        """Take the start's beginning and the user's history from their TaskState row."""
        if state.started_at is not None and state.started_at <= self.booted_at:
            self.started_at = state.started_at
        pulled = state.phase_at if state.start_phase == "pulling" else None
        if pulled is not None and self.started_at <= pulled <= self.booted_at:
            self.pull_started_at = pulled
        self.history = state.recent_starts
        self.expected = start_estimate.estimate(self.history, self._default_seconds)

    def enter(self, phase: str) -> int:
        """Mark `phase` begun now; the whole seconds left by the estimate (at least 1)."""
        self._entered[phase] = self._clock()
        return max(1, round(self.expected.remaining(phase, 0.0)))

    def usual(self) -> int:
        """How long a whole start takes this user (the stack's default without history)."""
        return round(self.expected.total)

    def elapsed(self) -> int:
        """Seconds since the start was asked for."""
        return round(max(0.0, self._clock() - self.started_at))

    def durations(self) -> dict[str, float]:
        """Seconds per phase of this start, measured up to now (call it when the agent is Running); without a
        pull start the pull is inside provisioning."""
        marks = [("provisioning", self.started_at)]
        if self.pull_started_at is not None:
            marks.append(("pulling", self.pull_started_at))
        marks.append(("restoring", self.booted_at))
        marks += [(p, self._entered[p]) for p in ("booting",) if p in self._entered]
        ends = [at for _, at in marks[1:]] + [self._clock()]
        return {phase: max(0.0, end - at) for (phase, at), end in zip(marks, ends, strict=True)}


class Progress:
    """Tells the user's web tabs (a `status` frame) and "waking up" Telegram messages which start-up step is
    running: in the background and in order, never delaying boot."""

    def __init__(
        self, delivery: ChannelDelivery, inbox: InboxStore, user_id: str, clock: Callable[[], float]
    ) -> None:
        self._delivery = delivery
        self._inbox = inbox
        self._user_id = user_id
        self._clock = clock
        self._last: asyncio.Task[None] | None = None

    def enter(self, start: StartClock, phase: str, record: Callable[[], object] | None = None) -> None:
        """Queue one start-up phase: its name, the seconds left and the user's usual start for the web,
        the same in words for Telegram; `record` (writing the phase into TaskState) runs first, in order."""
        eta = start.enter(phase)
        frame = protocol.status(
            "starting",
            phase=phase,
            eta_seconds=eta,
            usual_seconds=start.usual(),
            elapsed_seconds=start.elapsed(),
        )
        self._queue(frame, start_estimate.waiting_text(phase, eta), None, record)

    def show(self, text: str, phase: str, eta_seconds: int, *, answering: InboxItem | None = None) -> None:
        """Queue one step: `phase` and its ETA for the web, `text` for Telegram's waiting messages (those of
        the queued messages, and of the one `answering` when a reply is under way)."""
        self._queue(protocol.status("starting", phase=phase, eta_seconds=eta_seconds), text, answering, None)

    def _queue(
        self,
        frame: dict[str, object],
        text: str,
        answering: InboxItem | None,
        record: Callable[[], object] | None,
    ) -> None:
        telegram = self._delivery.telegram
        previous = self._last

        async def show() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            if record is not None:
                try:
                    await asyncio.to_thread(record)
                except Exception as exc:  # a tab that asks gets the previous phase: still a start
                    logger.info("start phase not recorded", error=repr(exc))
            await self._delivery.notice(self._user_id, frame)
            if telegram is None:
                return
            try:
                items = await asyncio.to_thread(self._inbox.pending, self._user_id, self._clock())
                if answering is not None and answering.message_id not in {i.message_id for i in items}:
                    items.insert(0, answering)
                await telegram.progress(items, text)
            except Exception as exc:  # progress is a courtesy; the answer replaces it anyway
                logger.info("start progress not shown", error=repr(exc))

        self._last = asyncio.create_task(show(), name="start-progress")

    async def settled(self) -> None:
        """Wait until every queued step is shown (a late one must not hide "running" or the answer)."""
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)
