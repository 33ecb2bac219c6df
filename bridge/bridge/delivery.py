"""Delivering the agent's replies to the user: streamed, coalesced, to every open client.

`Delivery` is channel-neutral: the agent loop opens one `ReplyStream` per answered Inbox item, feeds it
the deltas, then ends or fails it. `WebSocketDelivery` posts to all of the user's browser connections;
the Telegram channel brings its own implementation of the same two protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from serverless_openclaw import protocol
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.observability import logger

MAX_FRAME_CHARS = 16_000
"""Longest text put in one pushed frame: even at 6 JSON bytes a character (escaped control characters)
it stays under API Gateway's 128 KB limit for a `post_to_connection` payload."""


class ReplyStream(Protocol):
    """One assistant reply on its way to the user: deltas, then exactly one `end` or `fail`."""

    async def chunk(self, text: str) -> None:
        """Append streamed text (an increment, not the text so far)."""

    async def rewrite(self, text: str) -> None:
        """Replace all that was streamed with `text` (the reply so far, rewritten)."""

    async def end(self, full_text: str) -> None:
        """Finish the reply; `full_text` is authoritative (it may differ from the sum of the chunks)."""

    async def fail(self, code: str, message: str) -> None:
        """Finish the reply with a readable error (what was streamed so far is still delivered)."""


class Delivery(Protocol):
    """How replies and one-off notices reach a user on one channel."""

    def open(self, item: InboxItem, message_id: str) -> ReplyStream:
        """Start the reply to `item`; `message_id` is the id the assistant message is stored under."""
        ...

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        """Send a one-off frame (a status, a warning) outside any reply."""


class Pusher(Protocol):
    """The part of `ConnectionPusher` delivery needs: a blocking fan-out to the user's client connections."""

    def to_user(self, user_id: str, payload: Mapping[str, Any]) -> int:
        """Post `payload` to every open client connection of the user; returns how many got it."""
        ...

    def prefetch(self, user_id: str) -> None:
        """Look the user's connections up now, so the reply's first chunk need not."""
        ...


class WebSocketDelivery:
    """Streams replies to all of a user's browser connections through the WebSocket management API."""

    def __init__(self, pusher: Pusher, *, flush_interval: float = 0.15, max_buffer_chars: int = 2000) -> None:
        if flush_interval < 0 or max_buffer_chars < 1:
            raise ValueError("flush_interval must be >= 0 and max_buffer_chars >= 1")
        self._pusher = pusher
        self._flush_interval = flush_interval
        self._max_buffer_chars = max_buffer_chars
        self._prefetches: set[asyncio.Future[None]] = set()

    def _prefetch_done(self, future: asyncio.Future[None]) -> None:
        self._prefetches.discard(future)
        if not future.cancelled() and future.exception() is not None:
            # Only a head start: the first chunk looks the connections up itself.
            logger.warning("connection prefetch failed", error=type(future.exception()).__name__)

    def open(self, item: InboxItem, message_id: str) -> ReplyStream:
        """A coalescing stream for the reply to `item`."""
        # The connection lookup runs while the model thinks (hundreds of ms), not after its first token.
        prefetch = asyncio.ensure_future(asyncio.to_thread(self._pusher.prefetch, item.user_id))
        self._prefetches.add(prefetch)
        prefetch.add_done_callback(self._prefetch_done)
        return WebSocketReplyStream(
            self._pusher,
            user_id=item.user_id,
            conversation_id=item.conversation_id,
            message_id=message_id,
            reply_to=item.message_id,
            flush_interval=self._flush_interval,
            max_buffer_chars=self._max_buffer_chars,
        )

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        """Push one frame to the user's connections; a failure is logged, never raised."""
        try:
            await asyncio.to_thread(self._pusher.to_user, user_id, frame)
        except Exception as exc:
            logger.warning(
                "notice push failed", user_id=user_id, frame_type=frame.get("type"), error=repr(exc)
            )


class WebSocketReplyStream:
    """Coalesces deltas into `stream_chunk` frames: the first at once, then at most one per interval.

    Pushes of one stream never overlap: each waits for the previous one, even one whose caller was
    cancelled, so the browser sees chunks, then `stream_end`/`error`, in order.
    """

    def __init__(
        self,
        pusher: Pusher,
        *,
        user_id: str,
        conversation_id: str,
        message_id: str,
        reply_to: str,
        flush_interval: float,
        max_buffer_chars: int,
    ) -> None:
        self._pusher = pusher
        self._user_id = user_id
        self._message_id = message_id
        # Every frame of the reply names it; `replyTo` is the user message it answers (as in the history
        # row), so a tab can pair a reply with the message it sent even when several are in flight.
        self._address = {"conversationId": conversation_id, "messageId": message_id, "replyTo": reply_to}
        self._flush_interval = flush_interval
        self._max_buffer_chars = max_buffer_chars
        self._pending: list[str] = []
        self._pending_chars = 0
        self._started = False
        self._closed = False
        self._last_flush = -math.inf
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timed_flushes: set[asyncio.Task[None]] = set()
        self._in_flight: asyncio.Task[int] | None = None

    async def chunk(self, text: str) -> None:
        """Buffer `text`; push now if it is the first text or the buffer is full, else on the timer."""
        if self._closed:
            logger.debug("chunk after the reply ended, dropped", message_id=self._message_id)
            return
        if not text:
            return
        self._pending.append(text)
        self._pending_chars += len(text)
        if not self._started or self._pending_chars >= self._max_buffer_chars:
            # The first token goes out at once (the user sees the agent answering); a full buffer makes
            # the producer wait for the push, which bounds memory when the pusher is slow.
            await self._flush()
        elif not self._lock.locked():
            # While a push is in flight nothing is armed: the push re-arms the timer when it completes.
            self._arm_timer()

    async def rewrite(self, text: str) -> None:
        """Drop what is buffered and push `text` at once as a `stream_chunk` with `rewrite: true`: the
        tabs replace what they show with it."""
        if self._closed:
            logger.debug("rewrite after the reply ended, dropped", message_id=self._message_id)
            return
        self._cancel_timer()
        async with self._lock:
            self._pending.clear()
            self._pending_chars = 0
            await self._push_text(text, rewrite=True)

    async def end(self, full_text: str) -> None:
        """Push what is buffered, then `stream_end` with the full text."""
        frame = self._frame("stream_end", content=full_text)
        if len(full_text) > MAX_FRAME_CHARS:
            # Too large for one frame: the client keeps the streamed text or reloads the stored message.
            frame.update(content=full_text[:MAX_FRAME_CHARS], truncated=True)
        await self._finish(frame)

    async def fail(self, code: str, message: str) -> None:
        """Push what is buffered, then an `error` frame naming this reply."""
        await self._finish(protocol.error(code, message, **self._address))

    async def _finish(self, terminal: dict[str, Any]) -> None:
        if self._closed:
            logger.debug("reply already finished", message_id=self._message_id)
            return
        self._closed = True
        self._cancel_timer()
        async with self._lock:
            await self._push_pending()
            await self._push(terminal)
        # Timed flushes that were waiting for the lock find nothing left; wait so none outlives the stream.
        if self._timed_flushes:
            await asyncio.gather(*self._timed_flushes, return_exceptions=True)

    def _frame(self, type_: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, **self._address, **fields}

    def _arm_timer(self) -> None:
        if self._timer is not None or self._closed or not self._pending:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._last_flush + self._flush_interval, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush())
        self._timed_flushes.add(task)
        task.add_done_callback(self._timed_flushes.discard)

    async def _flush(self) -> None:
        async with self._lock:
            await self._push_pending()
        # Text that arrived during the push goes out one interval after it.
        self._arm_timer()

    async def _push_pending(self) -> None:
        """Push the buffer as one increment (split only if huge); the caller holds the lock."""
        if not self._pending:
            return
        self._cancel_timer()
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        await self._push_text(text, rewrite=False)

    async def _push_text(self, text: str, *, rewrite: bool) -> None:
        """Push `text` as `stream_chunk` frames (split only if huge), the first one a rewrite if asked."""
        self._started = True
        for start in range(0, max(len(text), 1), MAX_FRAME_CHARS):
            piece = text[start : start + MAX_FRAME_CHARS]
            frame = self._frame("stream_chunk", content=piece)
            if rewrite and start == 0:
                frame["rewrite"] = True
            await self._push(frame)
        # Measured after the push, so a slow pusher still gets a full interval of coalescing.
        self._last_flush = asyncio.get_running_loop().time()

    async def _push(self, frame: Mapping[str, Any]) -> None:
        previous = self._in_flight
        if previous is not None and not previous.done():
            # A push whose caller was cancelled is still running in its thread: never overtake it.
            await asyncio.wait([previous])
        task = asyncio.ensure_future(asyncio.to_thread(self._pusher.to_user, self._user_id, frame))
        task.add_done_callback(self._log_outcome(frame))
        self._in_flight = task
        # A failed push is logged by the done callback and never kills the run; cancellation still propagates.
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    def _log_outcome(self, frame: Mapping[str, Any]) -> Callable[[asyncio.Task[int]], None]:
        def log(task: asyncio.Task[int]) -> None:
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                logger.warning(
                    "reply push failed",
                    user_id=self._user_id,
                    message_id=self._message_id,
                    frame_type=frame.get("type"),
                    error=repr(exc),
                )
            elif task.result() == 0:
                logger.debug("no open client connection for the reply", message_id=self._message_id)

        return log


_OPENCLAW_FAILURE_DETAIL = re.compile(r"request failed \(([^()]{1,160})\)")
_TRANSIENT_PROVIDER = re.compile(
    r"rate limited|rate.?limit|provider overloaded|overloaded|provider internal error|request timed out|"
    r"HTTP (?:429|5\d\d)|temporar|unavailable|ECONNRESET|ECONNREFUSED|fetch failed|network",
    re.IGNORECASE,
)
_PROVIDER_REJECTED = re.compile(
    r"authentication failed|authentication was rejected|billing|model not found|request format rejected|"
    r"HTTP 40[0134]|invalid api key|re-authenticate",
    re.IGNORECASE,
)
_CONTEXT_TOO_LONG = re.compile(r"context limit exceeded|context overflow|context.?length", re.IGNORECASE)
_FIRST_SENTENCE = re.compile(r".+?(?:[.!?](?=\s|$)|$)")
_PARENTHESES = re.compile(r"\([^()]*\)")
_HTTP_STATUS = re.compile(r"HTTP \d{3}")
_MAX_DETAIL = 120


_ERROR_CODES: tuple[tuple[str, Callable[[str, str, str], object]], ...] = (
    ("aborted", lambda state, message, kind: state == "aborted"),
    ("empty_reply", lambda state, message, kind: state in ("final", "final_empty", "empty")),
    (
        "context_too_long",
        lambda state, message, kind: kind == "context_length" or _CONTEXT_TOO_LONG.search(message),
    ),
    ("refused", lambda state, message, kind: kind == "refusal"),
    ("provider_rejected", lambda state, message, kind: _PROVIDER_REJECTED.search(message)),
    (
        "provider_failed",
        lambda state, message, kind: (
            kind == "rate_limit"
            or _TRANSIENT_PROVIDER.search(message)
            or _OPENCLAW_FAILURE_DETAIL.search(message)
        ),
    ),
    ("timeout", lambda state, message, kind: "timeout" in (state, kind)),
)
"""(code, test of (result state, message, kind)): the first code whose test passes; else `agent_error`."""

_ERROR_TEXTS = {
    "aborted": "Stopped.",
    "empty_reply": "The agent finished without a reply.",
    "context_too_long": (
        "This conversation has grown too long for the model; start a new conversation and try again."
    ),
    "refused": "The model declined to answer this message.",
    "provider_rejected": (
        "The model provider refused the request ({detail}); "
        "check the provider's API key, billing and model settings."
    ),
    "provider_failed": (
        "The model provider is failing right now ({detail}); your message was not lost — "
        "try again in a minute."
    ),
    "timeout": (
        "The agent took too long to answer and was stopped; your message was not lost — "
        "try again in a minute."
    ),
    "agent_error": "The agent could not answer ({detail}); your message was not lost — try again.",
}


def readable_error(result_state: str, error_message: str | None, error_kind: str | None) -> tuple[str, str]:
    """Map how an OpenClaw run ended (`chat` state, `errorMessage`, `errorKind`) to (code, text for the user).

    `result_state` is OpenClaw's terminal state (`error`, `aborted`, or `final` with no text) or the
    bridge's own `timeout` (the run outlived its limit) / `final_empty` / `empty`.
    """
    message = (error_message or "").strip()
    kind = (error_kind or "").strip().lower()
    code = _error_code(result_state, message, kind)
    detail = _failure_detail(message)
    if code == "provider_rejected":
        detail = detail or "rejected"
    elif code == "provider_failed":
        detail = detail or ("rate limited" if kind == "rate_limit" else "temporary failure")
    elif code == "agent_error" and not detail:
        return code, "The agent could not answer this message; your message was not lost — try again."
    return code, _ERROR_TEXTS[code].format(detail=detail)


def _error_code(result_state: str, message: str, kind: str) -> str:
    return next((code for code, test in _ERROR_CODES if test(result_state, message, kind)), "agent_error")


def _failure_detail(message: str) -> str:
    """The short reason in OpenClaw's failure copy, else the first clause of the message (+ HTTP status)."""
    found = _OPENCLAW_FAILURE_DETAIL.search(message)
    if found:
        return found.group(1).strip()
    text = " ".join(message.removeprefix("⚠️").split())
    # "Authentication failed (provider returned HTTP 401). Your provider token may …" → "Authentication
    # failed, HTTP 401": the advice that follows is OpenClaw's, meant for its own UI.
    first = _FIRST_SENTENCE.match(text)
    clause = _PARENTHESES.sub("", first.group(0) if first else "")
    clause = " ".join(clause.split()).rstrip(".:;, ")
    status = _HTTP_STATUS.search(text)
    if status and status.group(0) not in clause:
        clause = f"{clause}, {status.group(0)}" if clause else status.group(0)
    return clause if len(clause) <= _MAX_DETAIL else clause[: _MAX_DETAIL - 1] + "…"
