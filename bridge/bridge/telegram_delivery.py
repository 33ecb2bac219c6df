"""Replies on Telegram: typing while the agent works, the answer streamed into one message, long answers
split, Markdown shown as Telegram HTML (plain text when Telegram refuses the markup).

The webhook sent a "waking up…" message when the agent was asleep and recorded its id in the Inbox
item (`replyTo.placeholderId`); the boot phases edit it with progress, and the reply is edited into it.
Otherwise the first streamed text is sent as a new message. Either way the message is then edited at
most once per `edit_interval` (Telegram allows about one message a second per chat) until the reply
ends; an answer over 4,096 characters continues in further messages, cut at paragraph or line ends.

Bot API calls block (stdlib HTTP with Telegram's 429 `retry_after` and 5xx backoff inside), so they run
in a thread, one at a time per reply, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bridge.delivery import ReplyStream
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.observability import logger
from serverless_openclaw.telegram import TelegramClient, TelegramError, split_message

TYPING_SECONDS = 4.5
"""Telegram shows "typing…" for 5 s after each chat action."""


class TelegramDelivery:
    """Opens Telegram reply streams and edits "waking up" messages while the agent boots."""

    def __init__(
        self,
        bot: TelegramClient,
        *,
        edit_interval: float = 1.5,
        typing_interval: float = TYPING_SECONDS,
    ) -> None:
        self._bot = bot
        self._edit_interval = edit_interval
        self._typing_interval = typing_interval
        # Replies under way, by the Inbox item they answer: progress for those goes through their stream.
        self._replies: dict[str, TelegramReplyStream] = {}
        # Items whose reply has ended: a late progress must never edit an answer away.
        self._answered: set[str] = set()

    def open(self, item: InboxItem, message_id: str) -> TelegramReplyStream | None:
        """A stream for the reply to `item`, or None when the item is not a Telegram message."""
        target = item.telegram_target()
        if target is None:
            return None
        chat_id, placeholder = target
        stream = TelegramReplyStream(
            self._bot,
            chat_id=chat_id,
            placeholder_id=placeholder,
            edit_interval=self._edit_interval,
            typing_interval=self._typing_interval,
            label=message_id,
            on_finished=lambda: self._finished(item.message_id),
        )
        self._replies[item.message_id] = stream
        return stream

    def _finished(self, item_id: str) -> None:
        self._replies.pop(item_id, None)
        self._answered.add(item_id)

    async def progress(self, items: Iterable[InboxItem], text: str) -> int:
        """Edit the waiting "waking up" messages of `items` to `text`; returns how many were edited.

        An item whose reply is under way shows `text` under what was streamed so far, through its stream:
        an edit around it would leave the stream believing the message still shows its own text. An item
        whose reply has ended is left alone.
        """
        edited = 0
        for item in items:
            if item.message_id in self._answered:
                continue
            reply = self._replies.get(item.message_id)
            if reply is not None:
                edited += 1 if await reply.notice(text) else 0
                continue
            target = item.telegram_target()
            if target is None or target[1] is None:
                continue
            try:
                await asyncio.to_thread(self._bot.edit_message_text, target[0], target[1], text)
                edited += 1
            except (TelegramError, OSError) as exc:
                logger.info("start progress not shown on telegram", error=str(exc))
        return edited


class TelegramReplyStream:
    """One reply in one chat: typing, then the text edited in place at a bounded rate, then the final text."""

    def __init__(
        self,
        bot: TelegramClient,
        *,
        chat_id: int,
        placeholder_id: int | None,
        edit_interval: float,
        typing_interval: float,
        label: str = "",
        on_finished: Callable[[], object] | None = None,
    ) -> None:
        self._bot = bot
        self._on_finished = on_finished
        self._chat_id = chat_id
        self._label = label
        self._edit_interval = edit_interval
        self._typing_interval = typing_interval
        # Message ids of the reply, in order, with the text each shows now (None: not written by us yet).
        self._ids: list[int] = [placeholder_id] if placeholder_id is not None else []
        self._shown: list[str | None] = [None] * len(self._ids)
        self._text = ""
        self._closed = False
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pump = asyncio.get_running_loop().create_task(self._run_pump())
        self._typing = asyncio.get_running_loop().create_task(self._keep_typing())

    async def chunk(self, text: str) -> None:
        """Append streamed text; it is shown at the next edit slot."""
        if self._closed or not text:
            return
        self._text += text
        self._dirty.set()

    async def rewrite(self, text: str) -> None:
        """Replace what was streamed; shown at the next edit slot."""
        if self._closed:
            return
        self._text = text
        self._dirty.set()

    async def end(self, full_text: str) -> None:
        """Show the final text (authoritative), formatted."""
        await self._finish(full_text)

    async def fail(self, code: str, message: str) -> None:
        """Show the error under whatever was streamed so far."""
        notice = f"⚠️ {message}"
        await self._finish(f"{self._text.rstrip()}\n\n{notice}" if self._text.strip() else notice)

    async def notice(self, text: str) -> bool:
        """Show `text` under what was streamed so far (the agent is restarting, say) until the reply goes
        on; False when the reply has already ended."""
        if self._closed:
            return False
        async with self._lock:
            # What was streamed so far is in it: only text that comes after replaces the notice.
            self._dirty.clear()
            # Rendered like any text, so the next edit knows what the message shows and replaces it.
            await self._render(
                f"{self._text.rstrip()}\n\n{text}" if self._text.strip() else text, final=False
            )
        return True

    async def _finish(self, text: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_finished is not None:
            self._on_finished()
        self._typing.cancel()
        async with self._lock:
            # Holding the lock, the pump is between renders: a render cut short here would still send
            # its message from its thread, unrecorded, and the final render would send it again.
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing
            await self._render(text, final=True)

    async def _run_pump(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            async with self._lock:
                await self._render(self._text, final=False)
            # Telegram counts edits against the chat's rate: at most one per interval.
            await asyncio.sleep(self._edit_interval)

    async def _keep_typing(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._bot.send_chat_action, self._chat_id, "typing")
            except (TelegramError, OSError) as exc:
                logger.debug("typing indicator failed", error=str(exc))
            await asyncio.sleep(self._typing_interval)

    async def _render(self, text: str, *, final: bool) -> None:
        pieces = split_message(text.strip()) if text.strip() else []
        for index, piece in enumerate(pieces):
            if index < len(self._shown) and self._shown[index] == piece:
                continue
            try:
                await self._show(index, piece)
            except (TelegramError, OSError) as exc:
                # A streaming edit that fails is overtaken by the next one; the final text is retried
                # inside the client (429 and 5xx), so what is left here is logged and given up.
                logger.warning(
                    "telegram reply not shown", reply=self._label, final=final, piece=index, error=str(exc)
                )
                if final:
                    continue
                return

    async def _show(self, index: int, piece: str) -> None:
        if index < len(self._ids):
            message_id = self._ids[index]
            try:
                await asyncio.to_thread(self._bot.edit_formatted, self._chat_id, message_id, piece)
            except TelegramError as exc:
                if exc.status != 400 or exc.is_markup_error:
                    raise
                # The message is gone (deleted by the user) or too old to edit: continue in a new one.
                self._ids[index] = await asyncio.to_thread(self._bot.send_formatted, self._chat_id, piece)
            self._shown[index] = piece
            return
        new_id = await asyncio.to_thread(self._bot.send_formatted, self._chat_id, piece)
        self._ids.append(new_id)
        self._shown.append(piece)


class ChannelDelivery:
    """Web tabs get every reply; a Telegram message's reply also goes to its chat."""

    def __init__(self, web: Any, telegram: TelegramDelivery | None = None) -> None:
        self.web = web
        self.telegram = telegram

    def open(self, item: InboxItem, message_id: str) -> ReplyStream:
        """The web stream, teed to Telegram for Telegram messages when the bot is configured."""
        web_stream: ReplyStream = self.web.open(item, message_id)
        telegram_stream = self.telegram.open(item, message_id) if self.telegram else None
        if telegram_stream is None:
            return web_stream
        return TeeStream((web_stream, telegram_stream))

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        """Status frames and warnings are for the web tabs."""
        await self.web.notice(user_id, frame)


class TeeStream:
    """One reply on several channels at once; a slow channel never reorders another's frames."""

    def __init__(self, streams: tuple[ReplyStream, ...]) -> None:
        self._streams = streams

    async def chunk(self, text: str) -> None:
        """Append to every channel."""
        await self._all(lambda s: s.chunk(text))

    async def rewrite(self, text: str) -> None:
        """Replace what was streamed on every channel."""
        await self._all(lambda s: s.rewrite(text))

    async def end(self, full_text: str) -> None:
        """Finish on every channel."""
        await self._all(lambda s: s.end(full_text))

    async def fail(self, code: str, message: str) -> None:
        """Fail on every channel."""
        await self._all(lambda s: s.fail(code, message))

    async def _all(self, call: Callable[[ReplyStream], Any]) -> None:
        results = await asyncio.gather(*(call(s) for s in self._streams), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                logger.warning("reply delivery failed on one channel", error=repr(result))
