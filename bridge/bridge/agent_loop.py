"""The Inbox loop: claim the oldest queued message with a lease, run it in its OpenClaw session, stream
the reply, back up what the run wrote, then store the reply and delete the item in one transaction, and
only then deliver the final frame — until the Inbox is empty.

A message is never lost: until it is answered it stays in the Inbox, leased. A crash lets the lease run
out and the next bridge takes it; a failure releases it for another attempt, and after
`max_attempts` it is marked failed and the user is told. One bad message never stops the loop.

A message is never answered twice: the `Fence` silences a bridge that may have lost the item (frozen,
superseded), the final transaction commits only while the claim and TaskState are still ours, and the
reply's history row has an id derived from the message, which a second answer cannot overwrite.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.delivery import Delivery, ReplyStream, readable_error
from bridge.fence import Claim, Fence
from serverless_openclaw import protocol
from serverless_openclaw.messages import InboxItem, reply_id
from serverless_openclaw.observability import logger
from serverless_openclaw.store.conversations import ConversationStore
from serverless_openclaw.store.ids import new_id
from serverless_openclaw.store.inbox import InboxStore, Settled


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
        on_rewrite: Callable[[str], Awaitable[None]] | None = None,
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
    claim: Claim
    done: asyncio.Event = field(default_factory=asyncio.Event)
    running: bool = True
    """Whether the model is still running (only then is there anything to abort)."""
    abort: asyncio.Task[None] | None = None
    """The abort of a run whose item was found no longer ours."""


class FencedStream:
    """A reply stream that goes quiet (drops every frame) once the item is no longer ours."""

    def __init__(self, inner: ReplyStream, holds: Callable[[], Awaitable[bool]]) -> None:
        self.inner = inner
        self._holds = holds

    async def chunk(self, text: str) -> None:
        """Stream `text` while the item is ours."""
        if await self._holds():
            await self.inner.chunk(text)

    async def rewrite(self, text: str) -> None:
        """Replace what was streamed with `text` while the item is ours."""
        if await self._holds():
            await self.inner.rewrite(text)

    async def end(self, full_text: str) -> None:
        """End the reply while the item is ours."""
        if await self._holds():
            await self.inner.end(full_text)

    async def fail(self, code: str, message: str) -> None:
        """Fail the reply while the item is ours."""
        if await self._holds():
            await self.inner.fail(code, message)


async def _nothing() -> None:
    return None


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
        fence: Fence,
        session_key_for: Callable[[str], str],
        before_final: Callable[[], Awaitable[None]] = _nothing,
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
        self.fence = fence
        self.before_final = before_final
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
        self._announcements: set[asyncio.Task[None]] = set()

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
        # A task TaskState no longer names claims nothing more: its replacement answers the Inbox.
        while self._claiming and not self.fence.superseded:
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
        message_id = reply_id(item.message_id)
        current = CurrentRun(
            item, self.session_key_for(item.conversation_id), self.clock(), self.fence.claim(item)
        )
        stream = FencedStream(self.delivery.open(item, message_id), lambda: self._holds(current))
        self.current = current
        self._announce(item, message_id)
        # Renewed until the reply is recorded: the backup before it may take a while.
        renewer = asyncio.create_task(self._renew_lease(current))
        try:
            try:
                try:
                    result = await self.runner.run(
                        current.session_key,
                        item.text,
                        idempotency_key=item.message_id,
                        on_delta=stream.chunk,
                        on_rewrite=stream.rewrite,
                        timeout=self.run_timeout,
                    )
                finally:
                    current.running = False
            except Exception as exc:
                logger.exception("run failed", message_id=item.message_id, attempt=item.attempts)
                if current.claim.lost is None:
                    await self._retry_later(item, stream, type(exc).__name__)
                return
            try:
                if await self._holds(current):
                    await self._finish(current, message_id, stream, result)
            except Exception:
                # Storing or deleting failed: the lease runs out and the item is answered again (same
                # idempotency key, so OpenClaw does not run the model twice).
                logger.exception("reply not recorded", message_id=item.message_id)
        finally:
            renewer.cancel()
            try:
                if current.abort is not None:
                    await asyncio.gather(current.abort, return_exceptions=True)
                if current.claim.lost is not None:
                    await self._let_go(current)
            finally:
                # Only now is the message settled: a shutdown waits for this, not just for the model.
                self.current = None
                current.done.set()

    def _announce(self, item: InboxItem, message_id: str) -> None:
        """Tell the tabs, without delaying the run, that the agent works on `item`: they show it typing
        under the message until the first text (a tab ignores this frame once text has come)."""
        frame = protocol.thinking(item.conversation_id, message_id, item.message_id)
        task = asyncio.create_task(self.delivery.notice(item.user_id, frame), name="thinking")
        self._announcements.add(task)
        task.add_done_callback(self._announcements.discard)

    async def _holds(self, current: CurrentRun) -> bool:
        """Whether the item is still ours; the first time it is not, the run is stopped."""
        if await self.fence.holds(current.claim):
            return True
        await self._stop_fenced(current, current.claim.lost or "claim")
        return False

    async def _stop_fenced(self, current: CurrentRun, why: str) -> None:
        """The item is not ours any more: stop the model (in the background, this may be its own callback)."""
        self.fence.lose(current.claim, why)
        if current.abort is None and current.running:
            current.abort = asyncio.create_task(self._abort_quietly(current.session_key))

    async def _abort_quietly(self, session_key: str) -> None:
        with contextlib.suppress(Exception):
            await self.runner.abort(session_key)

    async def _let_go(self, current: CurrentRun) -> None:
        """A fenced item: hand it back if it is still claimed in our name (only TaskState moved on)."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.inbox.release, current.item, self.claimer)

    async def _finish(
        self, current: CurrentRun, message_id: str, stream: FencedStream, result: RunOutcome
    ) -> None:
        item = current.item
        text = result.text or ""
        # A merged run's text is the reply of the run that absorbed this message: it answers it too.
        if result.state in ("final", "merged") and text.strip():
            # The reply may say "Created X": X reaches S3 before the user is told, so a crash after the
            # final frame loses nothing (and one before it leaves the item queued for the next task).
            await self.before_final()
            if await self._record(current, message_id, stream, text, None):
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
        await self._record_failure(current, message_id, stream, result)

    async def _record_failure(
        self, current: CurrentRun, message_id: str, stream: FencedStream, result: RunOutcome
    ) -> None:
        """A run that ended without an answer: store and show why (an abort settles the item; anything
        else marks it failed, as OpenClaw already retried the provider for minutes)."""
        state = "empty" if result.state == "final" else result.state
        code, readable = readable_error(state, result.error_message, result.error_kind)
        text = result.text or readable
        if await self._record(current, message_id, stream, text, result.state, (code, readable)):
            if result.state != "aborted":
                self.failed += 1
            self.on_answered()

    async def _record(
        self,
        current: CurrentRun,
        message_id: str,
        stream: FencedStream,
        text: str,
        state: str | None,
        failure: tuple[str, str] | None = None,
    ) -> bool:
        """Store the reply and settle the item in one transaction, then deliver it; False when fenced."""
        item = current.item
        extra = {"state": state, "replyTo": item.message_id} if state else {"replyTo": item.message_id}
        fail_reason = failure[1] if failure is not None and state != "aborted" else None
        now = self.clock()
        settled = await asyncio.to_thread(
            self.inbox.settle,
            item,
            self.claimer,
            now,
            reply=self.conversations.reply_writes(
                item.user_id, item.conversation_id, message_id, text, item.channel, now, extra
            ),
            guards=self.fence.guards(),
            failed=fail_reason,
        )
        if settled is Settled.LOST:
            self.fence.lose(current.claim, "final write refused")
            return False
        if settled is Settled.ANSWERED_BEFORE:
            # Answered already (its row exists): settle the item and show that answer, not this one.
            stored = await asyncio.to_thread(
                self.conversations.message, item.user_id, item.conversation_id, message_id
            )
            await asyncio.to_thread(self.inbox.complete, item, self.claimer)
            stored = stored or {}
            text = str(stored.get("content", text))
            state = stored.get("state")
            failure = readable_error(str(state), text, None) if state else None
        # Recorded: the final frame goes out whatever the fence says now, the history already holds it.
        if failure is None:
            await stream.inner.end(text)
        else:
            await stream.inner.fail(*failure)
        return True

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

    async def _renew_lease(self, current: CurrentRun) -> None:
        interval = max(1.0, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            ok = await asyncio.to_thread(
                self.inbox.renew, current.item, self.claimer, now, self.lease_seconds
            )
            if not ok:
                logger.warning("lease lost during a run", message_id=current.item.message_id)
                await self._stop_fenced(current, "claim")
                return
            self.fence.renewed(current.claim, now + self.lease_seconds)

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
