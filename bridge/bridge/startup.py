"""The bridge's start-up as the user and the operator see it: each phase timed, and progress shown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bridge.telegram_delivery import ChannelDelivery
from serverless_openclaw import protocol
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

    def show(self, text: str, phase: str, eta_seconds: int, *, answering: InboxItem | None = None) -> None:
        """Queue one step: `phase` and its ETA for the web, `text` for Telegram's waiting messages (those of
        the queued messages, and of the one `answering` when a reply is under way)."""
        telegram = self._delivery.telegram
        previous = self._last
        frame = protocol.status("starting", phase=phase, eta_seconds=eta_seconds)

        async def show() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
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
