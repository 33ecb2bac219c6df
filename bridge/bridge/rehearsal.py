"""The first turn after a boot, rehearsed on the stand-in model while nobody waits for it.

OpenClaw loads most of its agent runtime at the first turn after a boot, not during it: module chunks of
the reply pipeline and the embedded agent, worker threads, a helper process that verifies the agent
database, the tool catalog (measured: 7-8 s for the first turn against 0.5-0.7 s for the next, with the
offline model). Right after the handshake the bridge sends one message in a session of its own
(`REHEARSAL_SESSION`), on the stand-in model the bridge serves on loopback (stand_in_model.py), so a user's
first message finds all of that loaded. No paid model is ever called: the session is moved to the stand-in
first, and nothing is sent unless OpenClaw confirms the move.

The bridge says "running" once the rehearsal is over (`until_done_or`), so an agent woken without a message
answers its first one as fast as a warm one. A real message always comes first: a task started for a
message does not rehearse; one that arrives during the rehearsal stops it (it is aborted in the background,
while the message's own turn uses what the rehearsal loaded so far), and so does every run of the Inbox loop
(`GivingWay`) should a slow rehearsal outlive its wait. A failed rehearsal only costs the time it would
have saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bridge.agent_loop import Runner
from bridge.stand_in_model import MODEL_ID, PROVIDER_ID
from serverless_openclaw.observability import logger

REHEARSAL_SESSION = "agent:main:bridge:rehearsal"
REHEARSAL_MESSAGE = "This is a start-up check. Reply with: ok"
# The first turn after a boot takes 7-8 s here, several times that on a busy machine.
REHEARSAL_TIMEOUT = 180.0
# How long "running" waits for the rehearsal at most; a slower one goes on in the background.
REHEARSAL_WAIT = 30.0
# How often the Inbox is looked at meanwhile: a message waits at most this long for the rehearsal to stop.
INBOX_POLL = 0.25
_ABORT_TIMEOUT = 10.0


class RehearsalConnection(Runner, Protocol):
    """What a rehearsal needs of the bridge's connection to OpenClaw: requests, runs and aborts."""

    async def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Call a gateway method; its payload."""
        ...


class Rehearsal:
    """One rehearsal of the first turn, begun once after the handshake, stopped when a real run comes."""

    def __init__(self, connection: RehearsalConnection, *, timeout: float = REHEARSAL_TIMEOUT) -> None:
        self._connection = connection
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._abort: asyncio.Task[None] | None = None
        self.outcome = "not begun"
        """not begun, rehearsing, done, gave way, refused (OpenClaw did not take the stand-in), failed."""

    def begin(self) -> None:
        """Start the rehearsal in the background."""
        if self._task is None:
            self.outcome = "rehearsing"
            self._task = asyncio.create_task(self._rehearse(), name="first-turn-rehearsal")

    def give_way(self) -> None:
        """Stop a rehearsal still under way (its run is aborted in the background); no wait."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        self.outcome = "gave way"
        logger.info("first-turn rehearsal gave way to a message")
        self._abort = asyncio.create_task(self._abort_run(), name="first-turn-rehearsal-abort")

    async def until_done_or(
        self,
        message_waiting: Callable[[], Awaitable[bool]],
        *,
        wait: float = REHEARSAL_WAIT,
        poll: float = INBOX_POLL,
    ) -> None:
        """Wait until the rehearsal is over, at most `wait` seconds; give way as soon as a message waits."""
        task = self._task
        deadline = time.monotonic() + wait
        while task is not None and not task.done() and (left := deadline - time.monotonic()) > 0:
            try:
                waiting = await message_waiting()
            except Exception as exc:  # not knowing is no reason to keep a message waiting
                logger.warning("inbox not read during the rehearsal", error=type(exc).__name__)
                waiting = True
            if waiting:
                self.give_way()
                return
            await asyncio.wait({task}, timeout=min(poll, left))

    async def close(self) -> None:
        """Stop it for good (at shutdown)."""
        for task in (self._task, self._abort):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def finished(self) -> None:
        """Wait until the rehearsal (and the abort of one that gave way) has ended."""
        for task in (self._task, self._abort):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)

    async def _rehearse(self) -> None:
        started = time.monotonic()
        try:
            if not await self._on_stand_in():
                self.outcome = "refused"
                return
            result = await self._connection.run(
                REHEARSAL_SESSION, REHEARSAL_MESSAGE, idempotency_key=uuid.uuid4().hex, timeout=self._timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the first message then loads the runtime itself, as without a rehearsal
            self.outcome = "failed"
            logger.warning("first-turn rehearsal failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return
        self.outcome = "done" if result.state == "final" else "failed"
        logger.info("first turn rehearsed", state=result.state, seconds=round(time.monotonic() - started, 3))

    async def _on_stand_in(self) -> bool:
        """Move the rehearsal's session to the stand-in model; whether OpenClaw confirms it runs there."""
        wanted = f"{PROVIDER_ID}/{MODEL_ID}"
        payload = await self._connection.request(
            "sessions.patch", {"key": REHEARSAL_SESSION, "model": wanted}, timeout=30
        )
        resolved = payload.get("resolved")
        runs_on = (
            (resolved.get("modelProvider"), resolved.get("model")) if isinstance(resolved, dict) else None
        )
        if runs_on == (PROVIDER_ID, MODEL_ID):
            return True
        # Sending now could reach the user's paid model: no rehearsal rather than tokens spent on one.
        logger.warning("first turn not rehearsed: its session is not on the stand-in model", runs_on=runs_on)
        return False

    async def _abort_run(self) -> None:
        try:
            await asyncio.wait_for(self._connection.abort(REHEARSAL_SESSION), _ABORT_TIMEOUT)
        except Exception as exc:  # it then ends on its own, in a session nobody reads
            logger.info("first-turn rehearsal not aborted", error=type(exc).__name__)


class GivingWay:
    """The Inbox loop's runner: the gateway connection, with the rehearsal stopped before every run."""

    def __init__(self, runner: Runner, rehearsal: Rehearsal) -> None:
        self._runner = runner
        self._rehearsal = rehearsal

    async def run(self, session_key: str, message: str, **options: Any) -> Any:
        """Run one message, the rehearsal stopped first if it is still under way."""
        self._rehearsal.give_way()
        return await self._runner.run(session_key, message, **options)

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        """Abort a session's run."""
        return await self._runner.abort(session_key, run_id)
