"""Replies on Telegram, against the local Bot API simulator over loopback HTTP (the real client, no mocks).

What the user's chat shows is what counts: one message edited into the answer, typing while the agent
works, a bounded number of edits, long answers in order across messages, plain text when Telegram
refuses the markup, and a 429 that delays the answer but never doubles it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.delivery import ReplyStream
from bridge.telegram_delivery import ChannelDelivery, TeeStream, TelegramDelivery
from local.telegram import TelegramSimulator
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.telegram import TelegramClient
from tests.local.servers import serve

TOKEN = "7000000001:test-token-for-the-simulator"
CHAT = 4242


@pytest.fixture
def simulator() -> Iterator[tuple[TelegramSimulator, TelegramClient]]:
    sim = TelegramSimulator(token=TOKEN)
    with serve(sim.app) as server:
        yield sim, TelegramClient(TOKEN, api_base=server.url, backoff=0.05)


def item(placeholder: int | None = None, channel: str = "telegram", **reply_to: Any) -> InboxItem:
    target: dict[str, Any] = {"chatId": CHAT, "messageId": 1, **reply_to}
    if placeholder is not None:
        target["placeholderId"] = placeholder
    return InboxItem(
        user_id="u1",
        message_id="01JMSG",
        text="hi",
        channel=channel,
        conversation_id="01JCONV",
        created_at=0.0,
        reply_to=target,
    )


def delivery(bot: TelegramClient, **kw: Any) -> TelegramDelivery:
    kw.setdefault("edit_interval", 0.05)
    kw.setdefault("typing_interval", 0.05)
    return TelegramDelivery(bot, **kw)


def test_the_waking_up_message_is_edited_into_the_streamed_answer(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    placeholder = bot.send_message(CHAT, "⏳ Waking up your agent…")

    async def scenario() -> None:
        tg = delivery(bot)
        assert await tg.progress([item(placeholder)], "⏳ starting OpenClaw…") == 1
        stream = tg.open(item(placeholder), "01JREPLY")
        assert stream is not None
        for word in ["Here ", "is ", "**your** ", "list."]:
            await stream.chunk(word)
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.2)
        await stream.end("Here is **your** list.")

    asyncio.run(scenario())
    # One message only: the placeholder became the answer, formatted.
    assert sim.chat(CHAT) == ["Here is your list."]
    (message,) = sim.messages[CHAT]
    assert message.message_id == placeholder and message.parse_mode == "HTML"
    assert message.versions[0] == "⏳ Waking up your agent…" and "starting OpenClaw" in message.versions[1]
    assert any(chat == CHAT and action == "typing" for chat, action in sim.actions)


def test_without_a_placeholder_the_first_text_is_a_new_message_then_edits_are_bounded(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    chunks = [f"word{i} " for i in range(60)]

    async def scenario() -> None:
        stream = delivery(bot, edit_interval=0.3).open(item(), "01JREPLY")
        assert stream is not None
        for chunk in chunks:  # 60 deltas over about 1.2 s
            await stream.chunk(chunk)
            await asyncio.sleep(0.02)
        await stream.end("".join(chunks))

    asyncio.run(scenario())
    (message,) = sim.messages[CHAT]
    assert message.text == "".join(chunks).strip()
    edits = len(message.versions) - 1
    # At most one edit per 0.3 s over ~1.2 s of streaming, plus the final one: never one per delta.
    assert 1 <= edits <= 7, message.versions
    texts = message.versions
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))  # the answer only grows


def test_a_restart_notice_during_a_reply_shows_under_its_text_and_the_answer_still_replaces_it(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    placeholder = bot.send_message(CHAT, "⏳ Waking up your agent…")
    shown: list[list[str]] = []

    async def scenario() -> None:
        tg = delivery(bot)
        stream = tg.open(item(placeholder), "01JREPLY")
        assert stream is not None
        # Given a reply that has shown its first words
        await stream.chunk("Counting: 1 2")
        await asyncio.sleep(0.2)
        # When OpenClaw restarts under it, and the progress reaches the message being answered
        assert await tg.progress([item(placeholder)], "⏳ restarting your agent…") == 1
        shown.append(sim.chat(CHAT))
        # And the restarted run ends with the very text that was shown before
        await stream.end("Counting: 1 2")
        # Then a later progress leaves the finished answer alone
        assert await tg.progress([item(placeholder)], "⏳ late notice") == 0

    asyncio.run(scenario())
    # The notice was shown under what was streamed, in the one message, and the answer replaced it.
    assert shown == [["Counting: 1 2\n\n⏳ restarting your agent…"]]
    assert sim.chat(CHAT) == ["Counting: 1 2"]


def test_a_rewritten_reply_replaces_the_streamed_text_in_the_same_message(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    placeholder = bot.send_message(CHAT, "⏳ Waking up your agent…")
    shown: list[list[str]] = []

    async def scenario() -> None:
        stream = delivery(bot).open(item(placeholder), "01JREPLY")
        assert stream is not None
        # Given a reply that has shown its first words
        await stream.chunk("w1 w2")
        await asyncio.sleep(0.2)
        # When it is rewritten (a restarted run wrote another reply) and goes on
        await stream.rewrite("x1")
        await stream.chunk(" x2")
        await asyncio.sleep(0.2)
        shown.append(sim.chat(CHAT))
        await stream.end("x1 x2 x3")

    asyncio.run(scenario())
    # The message showed the new reply (not "w1 w2x1 x2") before the final edit, and ends as the answer.
    assert shown == [["x1 x2"]]
    assert sim.chat(CHAT) == ["x1 x2 x3"]


def test_a_long_answer_arrives_in_order_in_several_messages(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    paragraphs = [f"Paragraph {i}: " + ("lorem ipsum " * 40).strip() for i in range(30)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 3 * 4096

    async def scenario() -> None:
        stream = delivery(bot).open(item(bot.send_message(CHAT, "⏳ waking")), "01JREPLY")
        assert stream is not None
        for start in range(0, len(answer), 700):
            await stream.chunk(answer[start : start + 700])
            await asyncio.sleep(0.01)
        await stream.end(answer)

    asyncio.run(scenario())
    shown = sim.chat(CHAT)
    assert len(shown) >= 4 and all(len(text) <= 4096 for text in shown)
    assert "\n\n".join(shown) == answer  # cut at paragraph ends, nothing lost, nothing repeated
    assert all(text.startswith("Paragraph") for text in shown)


def test_markup_telegram_refuses_is_sent_as_plain_text(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    tangled = "**bold _and** italic_ crossed"

    async def scenario() -> None:
        stream = delivery(bot).open(item(), "01JREPLY")
        assert stream is not None
        await stream.chunk(tangled)
        await stream.end(tangled)

    asyncio.run(scenario())
    assert sim.chat(CHAT) == [tangled]
    assert sim.messages[CHAT][0].parse_mode is None
    refused = [params for method, params in sim.calls if params.get("parse_mode") == "HTML"]
    assert refused, "the HTML attempt came first"


def test_a_429_is_waited_out_and_the_answer_arrives_once(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator

    async def scenario() -> float:
        stream = delivery(bot, typing_interval=60).open(item(), "01JREPLY")
        assert stream is not None
        await asyncio.sleep(0.2)  # the first typing action goes out before the rate limit starts
        sim.rate_limited_calls, sim.retry_after = 2, 1
        started = asyncio.get_running_loop().time()
        await stream.end("The answer.")
        return asyncio.get_running_loop().time() - started

    waited = asyncio.run(scenario())
    assert sim.chat(CHAT) == ["The answer."]
    assert waited >= 2 * 1  # Telegram said "retry after 1 s" twice
    assert [m for m, _ in sim.calls].count("sendMessage") == 3  # two refused, one delivered


def test_a_failed_reply_shows_the_error_under_what_was_streamed(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator

    async def scenario() -> None:
        stream = delivery(bot).open(item(), "01JREPLY")
        assert stream is not None
        await stream.chunk("Half an answer")
        await asyncio.sleep(0.1)
        await stream.fail("aborted", "Stopped.")
        # Anything after the end is ignored.
        await stream.chunk(" more")
        await stream.end("late")

    asyncio.run(scenario())
    assert sim.chat(CHAT) == ["Half an answer\n\n⚠️ Stopped."]


def test_a_placeholder_the_user_deleted_is_replaced_by_a_new_message(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator

    async def scenario() -> None:
        stream = delivery(bot).open(item(placeholder=99_999), "01JREPLY")
        assert stream is not None
        await stream.end("Still delivered.")

    asyncio.run(scenario())
    assert sim.chat(CHAT) == ["Still delivered."]


class RecordingStream:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def chunk(self, text: str) -> None:
        self.events.append(("chunk", text))

    async def end(self, full_text: str) -> None:
        self.events.append(("end", full_text))

    async def fail(self, code: str, message: str) -> None:
        self.events.append(("fail", code))


class RecordingWeb:
    def __init__(self) -> None:
        self.streams: list[RecordingStream] = []
        self.notices: list[dict[str, Any]] = []

    def open(self, item: InboxItem, message_id: str) -> ReplyStream:
        self.streams.append(RecordingStream())
        return self.streams[-1]

    async def notice(self, user_id: str, frame: Any) -> None:
        self.notices.append(dict(frame))


def test_channel_delivery_tees_telegram_replies_to_the_web_tabs(
    simulator: tuple[TelegramSimulator, TelegramClient],
) -> None:
    sim, bot = simulator
    web = RecordingWeb()
    channels = ChannelDelivery(web, delivery(bot))

    async def scenario() -> None:
        web_only = channels.open(item(channel="web"), "01JA")
        assert isinstance(web_only, RecordingStream)
        both = channels.open(item(), "01JB")
        assert isinstance(both, TeeStream)
        await both.chunk("hello")
        await both.end("hello")
        await channels.notice("u1", {"type": "status", "status": "running"})

    asyncio.run(scenario())
    assert web.streams[1].events == [("chunk", "hello"), ("end", "hello")]
    assert sim.chat(CHAT) == ["hello"]
    assert web.notices == [{"type": "status", "status": "running"}]


def test_telegram_target_needs_a_chat() -> None:
    assert item(placeholder=5).telegram_target() == (CHAT, 5)
    assert item(channel="web").telegram_target() is None
    assert item(chatId="42").telegram_target() is None
    assert item(placeholderId=True).telegram_target() == (CHAT, None)
