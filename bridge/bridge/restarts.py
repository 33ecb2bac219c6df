"""OpenClaw dying while the agent runs, as the user sees it.

The supervisor (`gateway_process`) restarts the child and the client (`openclaw_client`) reconnects and
re-sends the message it was answering; that takes tens of seconds. Meanwhile the user is told, as during
a cold start: every web tab gets a `status` frame (`starting`, phase `restarting`, an ETA from the
restarts measured so far), Telegram's waiting messages and the reply under way say so, and TaskState
carries `restartingUntil` so `getStatus` and `GET /api/status` say so too. Once the client is connected
again, the row is cleared and the tabs are told `running`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from bridge.startup import Progress
from bridge.telegram_delivery import ChannelDelivery
from serverless_openclaw import protocol
from serverless_openclaw.lifecycle import RESTARTING_PHASE
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.observability import logger

RESTART_HEALTH_GRACE = 180.0
"""Seconds an OpenClaw restart may take before /health says the task is unhealthy (a restart takes 35-50 s;
the supervisor's backoff grows after repeated deaths, and a child that never comes back needs replacing)."""


class RestartRecord(Protocol):
    """The part of TaskStateStore that records a restart."""

    def mark_restarting(self, user_id: str, task_arn: str, until: float | None) -> bool:
        """Set `restartingUntil` (None: remove it) on the row naming this Running task."""
        ...


def restarting_text(eta_seconds: int) -> str:
    """What Telegram's waiting message (or the reply under way) says while OpenClaw restarts."""
    return f"⏳ OpenClaw stopped unexpectedly: restarting your agent (about {eta_seconds} s)…"


class GatewayRestarts:
    """Tells the user while OpenClaw restarts, from the child's death (`died`) until the client is connected
    again (`back`); only once armed, when the agent is Running (during boot the start-up progress shows)."""

    def __init__(
        self,
        progress: Progress,
        delivery: ChannelDelivery,
        record: RestartRecord,
        user_id: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._delivery = delivery
        self._record = record
        self._user_id = user_id
        self._clock = clock
        self._monotonic = monotonic
        self._task_arn: str | None = None
        self._answering: Callable[[], InboxItem | None] = lambda: None
        # Seconds from the end of the restart's backoff until the client is connected again (cleaning up
        # the dead child's helpers, OpenClaw's boot, the handshake): at boot, then the last restart's.
        self._boot_seconds = 0.0
        self._down_since: float | None = None
        self._respawn_at = 0.0
        self._last: asyncio.Task[None] | None = None
        self.durations: list[float] = []
        """How long each restart kept the agent from answering (death to reconnect), in seconds."""

    @property
    def restarting(self) -> bool:
        """Whether OpenClaw is being restarted right now (as far as users were told)."""
        return self._down_since is not None

    def down_seconds(self) -> float | None:
        """How long OpenClaw has been down in the restart under way; None when it is not restarting."""
        if self._down_since is None:
            return None
        return self._monotonic() - self._down_since

    def health(self) -> tuple[bool, str]:
        """(healthy, reason) while OpenClaw is down: healthy during a restart of under RESTART_HEALTH_GRACE.

        A restart under way is the supervisor doing its job: unhealthy would let ECS replace the task (3
        checks 30 s apart) in the middle of a restart that takes 35-50 s, and a new task boots slower.
        """
        down = self.down_seconds()
        if down is not None and down < RESTART_HEALTH_GRACE:
            return True, f"restarting openclaw ({down:.0f} s)"
        return False, "openclaw gateway down"

    def arm(self, task_arn: str, boot_seconds: float, answering: Callable[[], InboxItem | None]) -> None:
        """From now on deaths are told: the task is Running, OpenClaw took `boot_seconds` to come up at
        start-up (the first estimate), and `answering` names the message being answered, if any."""
        self._task_arn = task_arn
        self._boot_seconds = boot_seconds
        self._answering = answering

    def disarm(self) -> None:
        """The task is stopping: its gateway is stopped on purpose and the row is released anyway."""
        self._task_arn = None

    def died(self, restart_in: float) -> None:
        """The child died unexpectedly and will be spawned again in `restart_in` seconds."""
        if self._task_arn is None:
            return
        now = self._monotonic()
        if self._down_since is None:
            self._down_since = now
        self._respawn_at = now + restart_in
        eta = max(1, round(restart_in + self._boot_seconds))
        logger.warning("openclaw restarting; telling the user", eta_seconds=eta)
        self._progress.show(restarting_text(eta), RESTARTING_PHASE, eta, answering=self._answering())
        self._then(functools.partial(self._mark, self._task_arn, self._clock() + eta))

    def back(self) -> None:
        """The client is connected to the gateway again: messages are answered again."""
        if self._down_since is None or self._task_arn is None:
            return
        now = self._monotonic()
        took, self._down_since = now - self._down_since, None
        self._boot_seconds = max(0.0, now - self._respawn_at)
        self.durations.append(round(took, 1))
        logger.info("openclaw back after a restart", seconds=round(took, 1))
        self._then(functools.partial(self._running, self._task_arn))

    async def settled(self) -> None:
        """Wait until everything told so far has been sent and recorded."""
        await self._progress.settled()
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)

    def _then(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` after the previous one, in the background: the supervisor never waits for users."""
        previous = self._last

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await step()

        self._last = asyncio.create_task(run(), name="gateway-restart-notice")

    async def _mark(self, task_arn: str, until: float | None) -> None:
        try:
            await asyncio.to_thread(self._record.mark_restarting, self._user_id, task_arn, until)
        except Exception as exc:  # a courtesy: the push already told the open tabs
            logger.warning("restart not recorded in TaskState", error=repr(exc))

    async def _running(self, task_arn: str) -> None:
        # After the last "restarting" frame and with the row cleared, so a getStatus right after agrees.
        await self._progress.settled()
        await self._mark(task_arn, None)
        await self._delivery.notice(self._user_id, protocol.status("running"))
