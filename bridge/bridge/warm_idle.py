"""An agent woken without a message (wake on intent: the web chat opened, Telegram /start) that gets none
stops itself once the warm idle timeout has passed, instead of waiting for the watchdog's next sweep
(every 5 minutes) to apply the same rule (`lifecycle.warm_expired`).

The stop is the usual graceful one: TaskState Running → Stopping with a conditional write that holds
only while the row is still unused (`warmSince` set, `lastActivity` unchanged), the tabs told
"stopping", then the process ends as on SIGTERM (final backup, TaskState Idle). A message that races
the stop either lands first (the write is refused and the agent stays) or finds the agent Stopping and
waits for the next task, which the STOPPED event starts for it (task_events): it is never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from serverless_openclaw import lifecycle, protocol
from serverless_openclaw.config import LifecycleConfig
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.observability import logger

MAX_CHECK_SECONDS = 30.0
"""Longest wait between two reads of TaskState while the agent is still unused."""


class WarmRow(Protocol):
    """The part of TaskStateStore the warm idle rule needs."""

    def get(self, user_id: str, *, consistent: bool = True) -> TaskState:
        """The user's TaskState row."""
        ...

    def stop_unused_warm(self, user_id: str, task_arn: str, seen: TaskState, now: float) -> bool:
        """Running → Stopping while the row is still unused since `seen`."""
        ...


class WarmIdle:
    """Watches one task woken without a message; ends when a message comes or once it stopped itself."""

    def __init__(
        self,
        task_state: WarmRow,
        user_id: str,
        task_arn: str,
        timeout_minutes: float,
        *,
        clock: Callable[[], float],
        busy: Callable[[], bool],
        tell: Callable[[dict[str, object]], Awaitable[None]],
        stop: Callable[[], None],
    ) -> None:
        self.task_state = task_state
        self.user_id = user_id
        self.task_arn = task_arn
        self.cfg = LifecycleConfig(warm_idle_timeout_minutes=timeout_minutes)
        self.clock = clock
        self.busy = busy
        self.tell = tell
        self.stop = stop
        self.stopped = False

    async def run(self) -> None:
        """Until a message comes (the row loses `warmSince`) or the timeout passes and the task stops."""
        while True:
            try:
                wait = await self.check()
            except Exception:  # a failed read is retried; the watchdog is the net meanwhile
                logger.exception("warm idle check failed")
                wait = MAX_CHECK_SECONDS
            if wait is None:
                return
            await asyncio.sleep(wait)

    async def check(self) -> float | None:
        """One look at the row: None when there is nothing more to watch, else seconds to the next look."""
        state = await asyncio.to_thread(self.task_state.get, self.user_id)
        if state.task_arn != self.task_arn or state.status is not Status.RUNNING or state.warm_since is None:
            return None  # a message came (normal idle timeout from now on), or the task is not ours
        now = self.clock()
        if self.busy() or not lifecycle.warm_expired(state, now, self.cfg):
            return min(MAX_CHECK_SECONDS, max(1.0, self._left(state, now)))
        if not await asyncio.to_thread(
            self.task_state.stop_unused_warm, self.user_id, self.task_arn, state, now
        ):
            return 1.0  # the row moved (a message, most likely): look again at once
        logger.info(
            "woken without a message and none came: stopping",
            timeout_minutes=self.cfg.warm_idle_timeout_minutes,
        )
        self.stopped = True
        await self.tell(protocol.status("stopping"))
        self.stop()
        return None

    def _left(self, state: TaskState, now: float) -> float:
        since = max(t for t in (state.warm_since, state.changed_at, state.last_activity) if t is not None)
        return since + self.cfg.warm_idle_timeout_minutes * 60 - now + 0.5
