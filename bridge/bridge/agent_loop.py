"""The Inbox loop: claim the oldest queued message with a lease, run it in its OpenClaw session, deliver
the reply, store it in Conversations, delete the item — until the Inbox is empty.

A message is never lost: until it is answered it stays in the Inbox, leased. A crash lets the lease run
out and the next bridge takes it; a failure releases it for another attempt, and after
`max_attempts` it is marked failed and the user is told. One bad message never stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.delivery import Delivery, ReplyStream, readable_error
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.observability import logger
from serverless_openclaw.store.conversations import ConversationStore
from serverless_openclaw.store.ids import new_id
from serverless_openclaw.store.inbox import InboxStore


class RunOutcome(Protocol):
    """What the gateway client returns for one run."""

    state: str
    text: str
    error_message: str | None
    error_kind: str | None


class Runner(Protocol):
    """The OpenClaw gateway, as far as the loop needs it."""

    async def run(
        self,
        session_key: str,
        message: str,
        *,
        idempotency_key: str,
        on_delta: Callable[[str], Awaitable[None]] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run one message in a session until its terminal event."""
        ...

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        """Abort the session's active run."""
        ...


@dataclass
class CurrentRun:
    """The message being answered right now."""

    item: InboxItem
    session_key: str
    started_at: float
    done: asyncio.Event = field(default_factory=asyncio.Event)


class InboxLoop:
    """Drains one user's Inbox through the gateway, one message at a time, oldest first."""

    def __init__(
        self,
        *,
        user_id: str,
        claimer: str,
        inbox: InboxStore,
        conversations: ConversationStore,
        runner: Runner,
        delivery: Delivery,
        session_key_for: Callable[[str], str],
        clock: Callable[[], float] = time.time,
        lease_seconds: int = 120,
        max_attempts: int = 3,
        run_timeout: float = 300.0,
        poll_interval: float = 20.0,
        on_answered: Callable[[], None] | None = None,
    ) -> None:
        self.user_id = user_id
        self.claimer = claimer
        self.inbox = inbox
        self.conversations = conversations
        self.runner = runner
        self.delivery = delivery
        self.session_key_for = session_key_for
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.run_timeout = run_timeout
        self.poll_interval = poll_interval
        self.on_answered = on_answered or (lambda: None)
        self.current: CurrentRun | None = None
        self.answered = 0
        self.failed = 0
        self._wake = asyncio.Event()
        self._claiming = True
        self._shutting_down = False

    @property
    def busy(self) -> bool:
        """True while a message is being answered."""
        return self.current is not None

    def nudge(self) -> None:
        """New messages may be waiting: drain soon."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Drain on every nudge, and every poll_interval as a safety net for a missed nudge."""
        while self._claiming:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()
            try:
                await self.drain()
            except Exception:  # a DynamoDB hiccup must not end the loop; the next wake retries
                logger.exception("inbox drain failed")
                await asyncio.sleep(1)

    async def drain(self) -> int:
        """Answer queued messages until none is left (or claiming stops); returns how many were handled."""
        handled = 0
        while self._claiming:
            item = await asyncio.to_thread(
                self.inbox.claim_next, self.user_id, self.claimer, self.clock(), self.lease_seconds
            )
            if item is None:
                break
            await self.process(item)
            handled += 1
        return handled

    async def process(self, item: InboxItem) -> None:
        """Answer one claimed item, whatever happens (never raises for a bad message)."""
        if item.attempts > self.max_attempts:
            await self._give_up(item, f"it failed {self.max_attempts} times")
            return
        message_id = new_id()
        stream = self.delivery.open(item, message_id)
        current = CurrentRun(item, self.session_key_for(item.conversation_id), self.clock())
        self.current = current
        renewer = asyncio.create_task(self._renew_lease(item))
        try:
            try:
                result = await self.runner.run(
                    current.session_key,
                    item.text,
                    idempotency_key=item.message_id,
                    on_delta=stream.chunk,
                    timeout=self.run_timeout,
                )
            except Exception as exc:
                logger.exception("run failed", message_id=item.message_id, attempt=item.attempts)
                await self._retry_later(item, stream, type(exc).__name__)
                return
            finally:
                renewer.cancel()
            try:
                await self._finish(item, message_id, stream, result)
            except Exception:
                # Storing or deleting failed: the lease runs out and the item is answered again (same
                # idempotency key, so OpenClaw does not run the model twice).
                logger.exception("reply not recorded", message_id=item.message_id)
        finally:
            # Only now is the message settled: a shutdown waits for this, not just for the model.
            self.current = None
            current.done.set()

    async def _finish(
        self, item: InboxItem, message_id: str, stream: ReplyStream, result: RunOutcome
    ) -> None:
        text = result.text or ""
        # A merged run's text is the reply of the run that absorbed this message: it answers it too.
        if result.state in ("final", "merged") and text.strip():
            await self._store(item, message_id, text, None)
            await stream.end(text)
            await asyncio.to_thread(self.inbox.complete, item, self.claimer)
            self.answered += 1
            logger.info("message answered", message_id=item.message_id, chars=len(text))
            self.on_answered()
            return
        if result.state == "aborted" and self._shutting_down:
            # Cut short by a shutdown, not by the user: the next task answers it from the start.
            await stream.fail(
                "interrupted", "The agent is restarting; your message will be answered shortly."
            )
            await asyncio.to_thread(self.inbox.release, item, self.claimer)
            return
        if result.state == "merged":
            # Folded into a run whose reply was already delivered and stored: nothing more to say.
            await stream.end(text)
            await asyncio.to_thread(self.inbox.complete, item, self.claimer)
            return
        state = "empty" if result.state == "final" else result.state
        code, readable = readable_error(state, result.error_message, result.error_kind)
        await self._store(item, message_id, text or readable, result.state)
        await stream.fail(code, readable)
        if result.state == "aborted":
            await asyncio.to_thread(self.inbox.complete, item, self.claimer)
        else:
            # OpenClaw already retried the provider for minutes; running it again would repeat that wait.
            await asyncio.to_thread(self.inbox.mark_failed, item, readable, self.clock())
            self.failed += 1
        self.on_answered()

    async def _store(self, item: InboxItem, message_id: str, text: str, state: str | None) -> None:
        await asyncio.to_thread(
            self.conversations.add_message,
            item.user_id,
            item.conversation_id,
            "assistant",
            text,
            item.channel,
            self.clock(),
            message_id=message_id,
            extra={"state": state, "replyTo": item.message_id} if state else {"replyTo": item.message_id},
        )

    async def _retry_later(self, item: InboxItem, stream: ReplyStream, reason: str) -> None:
        if item.attempts >= self.max_attempts:
            await self._give_up(item, f"the agent failed on it {item.attempts} times ({reason})", stream)
            return
        with contextlib.suppress(Exception):
            await stream.fail("retrying", "Something went wrong while answering; trying again.")
        released = await asyncio.to_thread(self.inbox.release, item, self.claimer)
        if not released:
            logger.warning("claim lost before release", message_id=item.message_id)

    async def _give_up(self, item: InboxItem, why: str, stream: ReplyStream | None = None) -> None:
        text = f"Your message could not be answered: {why}. Please send it again."
        await asyncio.to_thread(self.inbox.mark_failed, item, why, self.clock())
        self.failed += 1
        logger.warning("message given up", message_id=item.message_id, attempts=item.attempts)
        stream = stream or self.delivery.open(item, new_id())
        await stream.fail("message_failed", text)

    async def _renew_lease(self, item: InboxItem) -> None:
        interval = max(1.0, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            ok = await asyncio.to_thread(
                self.inbox.renew, item, self.claimer, self.clock(), self.lease_seconds
            )
            if not ok:
                logger.warning("lease lost during a run", message_id=item.message_id)
                return

    def stop_claiming(self) -> None:
        """Take no new messages (shutdown); the current run may finish."""
        self._claiming = False
        self._wake.set()

    async def finish_or_abort(self, grace: float, abort_wait: float = 10.0) -> bool:
        """Let the current run finish within `grace`; else abort it and give the message back.

        Returns True when nothing was left half done.
        """
        self._shutting_down = True
        current = self.current
        if current is None:
            return True
        try:
            await asyncio.wait_for(current.done.wait(), grace)
            return True
        except TimeoutError:
            logger.warning("run still going at shutdown, aborting", message_id=current.item.message_id)
        with contextlib.suppress(Exception):
            await self.runner.abort(current.session_key)
        try:
            await asyncio.wait_for(current.done.wait(), abort_wait)
        except TimeoutError:
            # The gateway did not confirm the abort: hand the message back ourselves.
            await asyncio.to_thread(self.inbox.release, current.item, self.claimer)
        return False
