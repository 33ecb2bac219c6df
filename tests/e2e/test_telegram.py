"""The Telegram bot end to end: the simulator plays Telegram and its users, the rest is the real product.

One stack, one story: a stranger is refused, a forged update is refused, the web user links their
Telegram account through the HTTP API, and from then on the same agent answers on Telegram, the
conversation shows up in the web history, long answers come in order in several messages, tangled
Markdown falls back to plain text, a 429 delays the answer without doubling it, and a redelivered
update is not answered twice, and a burst of messages is answered and stored in Telegram's order. The
agent's OpenClaw never sees the bot token.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import LocalStackProcess, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ADA = 424242
STRANGER = 5001
REPLY_TIMEOUT = 180


def _answers(stack: LocalStackProcess, chat: int, needle: str) -> list[dict[str, Any]]:
    return [m for m in stack.telegram_chat(chat) if needle in m["text"]]


async def _answer(stack: LocalStackProcess, chat: int, needle: str) -> dict[str, Any]:
    """Wait for a bot message containing `needle` in the chat."""
    found = await until(
        lambda: _answers(stack, chat, needle), REPLY_TIMEOUT, f"a Telegram answer with {needle!r}", stack
    )
    return found[0]


def _processes_of(state_dir: Path) -> list[tuple[int, str, bytes]]:
    """(pid, command line, environment) of every process started for the stack's agent tasks."""
    found = []
    marker = str(state_dir / "tasks").encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ:
            found.append((int(proc.name), cmdline, environ))
    return found


async def test_a_linked_telegram_user_talks_to_the_web_users_agent_and_a_burst_is_answered_in_order(
    start_stack: Any, tmp_path: Path
) -> None:
    stack: LocalStackProcess = start_stack()
    webhook = stack.endpoints["telegramWebhookUrl"]
    tables = stack.endpoints["tables"]

    # A forged update (wrong or no secret) is refused before anything is written.
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "from": {"id": ADA},
            "chat": {"id": ADA, "type": "private"},
            "date": 0,
            "text": "forged",
        },
    }
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guessed"}):
        assert httpx.post(webhook, json=update, headers=headers, timeout=30).status_code == 403
    for table in tables.values():
        assert stack.client("dynamodb").scan(TableName=table)["Count"] == 0, table

    # A stranger gets one polite refusal, and nothing starts.
    for text in ("hello?", "start the agent"):
        assert stack.telegram_say(STRANGER, text)["webhookStatus"] == 200
    refusals = stack.telegram_chat(STRANGER)
    assert len(refusals) == 1 and "/link" in refusals[0]["text"]
    assert stack.tasks() == []

    # The web user asks for a code (as the web chat's settings will) and links their Telegram account.
    token, user_id = stack.login(), stack.endpoints["userId"]
    code = stack.api("POST", "/api/telegram/link-code", token)
    assert code.status_code == 201, code.text
    stack.telegram_say(ADA, f"/link {code.json()['code']}")
    await _answer(stack, ADA, "Linked")
    link = stack.api("GET", "/api/telegram/link", token).json()
    assert link["linked"] is True and link["telegramUserId"] == ADA

    # The same agent answers on Telegram: the "waking up" message becomes the answer.
    stack.telegram_say(ADA, "hello from telegram")
    answer = await _answer(stack, ADA, "You said: hello from telegram")
    assert [m["messageId"] for m in stack.telegram_chat(ADA)].count(answer["messageId"]) == 1
    assert answer["edits"] >= 1, "the waking-up message was edited into the answer"
    assert stack.running_tasks() and stack.task_state(user_id)["status"] == "Running"

    # The agent's processes never see the bot token (OpenClaw would take over the bot with it).
    bot_token = stack.client("ssm").get_parameter(
        Name=f"/{stack.endpoints['stackName']}/secrets/telegram-bot-token", WithDecryption=True
    )["Parameter"]["Value"]
    processes = _processes_of(stack.state_dir)
    assert any("openclaw" in cmdline for _, cmdline, _ in processes), [c for _, c, _ in processes]
    for pid, cmdline, environ in processes:
        assert bot_token.encode() not in environ, f"the bot token is in the environment of {pid}: {cmdline}"
        assert b"TELEGRAM_BOT_TOKEN=" not in environ

    # The conversation is in the web user's history.
    listing = stack.api("GET", "/api/conversations", token).json()["items"]
    assert len(listing) == 1
    history = stack.api("GET", f"/api/conversations/{listing[0]['conversationId']}/messages", token).json()
    contents = [(m["role"], m["channel"], m["content"]) for m in reversed(history["items"])]
    assert contents[0] == ("user", "telegram", "hello from telegram")
    assert contents[1][0:2] == ("assistant", "telegram") and "hello from telegram" in contents[1][2]

    # A long answer arrives in order, in several messages of at most 4,096 characters.
    before = len(stack.telegram_chat(ADA))
    stack.telegram_say(ADA, "write 40 paragraphs")
    await _answer(stack, ADA, "Paragraph 40.")
    await until(lambda: not stack.inbox(user_id), REPLY_TIMEOUT, "the long answer to be stored", stack)
    long_answer = stack.telegram_chat(ADA)[before:]
    assert len(long_answer) >= 4 and all(len(m["text"]) <= 4096 for m in long_answer)
    text = "\n\n".join(m["text"] for m in long_answer)
    positions = [text.index(f"Paragraph {i}.") for i in range(1, 41)]
    assert positions == sorted(positions)
    assert all(text.count(f"Paragraph {i}. ") == 1 for i in range(1, 41))

    # Markdown Telegram cannot parse falls back to plain text (the offline model echoes it).
    stack.telegram_say(ADA, "**bold _and** italic_")
    tangled = await _answer(stack, ADA, "You said: **bold _and** italic_")
    assert tangled["parseMode"] is None
    await until(lambda: not stack.inbox(user_id), REPLY_TIMEOUT, "the echo to be stored", stack)

    # A 429 from Telegram is waited out and the answer still arrives exactly once.
    stack.telegram_rate_limit(calls=3, retry_after=1)
    sent = stack.telegram_say(ADA, "after the rate limit")
    await _answer(stack, ADA, "You said: after the rate limit")
    await until(lambda: not stack.inbox(user_id), REPLY_TIMEOUT, "the answer to be stored", stack)

    # Telegram redelivers the same update: no second answer, nothing queued.
    assert stack.telegram_redeliver(sent["updateId"]) == 200
    assert stack.telegram_redeliver(sent["updateId"], secret="forged") == 403
    await until(lambda: not stack.inbox(user_id), 10, "the inbox to stay empty", stack)
    assert len(_answers(stack, ADA, "You said: after the rate limit")) == 1
    history = stack.api("GET", f"/api/conversations/{listing[0]['conversationId']}/messages", token).json()
    users = [m["content"] for m in history["items"] if m["role"] == "user"]
    assert users.count("after the rate limit") == 1

    # Given the linked user's agent is awake, When eight messages are written at once (Telegram numbers
    # them as it receives them)
    burst = [f"burst message {i}" for i in range(8)]
    with ThreadPoolExecutor(len(burst)) as pool:
        sent = list(pool.map(lambda text: stack.telegram_say(ADA, text), burst))
    typed = [text for _, text in sorted(zip((s["messageId"] for s in sent), burst, strict=True))]

    # Then each is answered once, in message_id order, and the history lists them in that order
    await until(
        lambda: all(_answers(stack, ADA, f"You said: {text}") for text in burst) and not stack.inbox(user_id),
        REPLY_TIMEOUT,
        "every message of the burst to be answered",
        stack,
    )
    shown = [m["text"] for m in stack.telegram_chat(ADA) if "You said: burst" in m["text"]]
    assert [next(t for t in burst if t in s) for s in shown] == typed
    (listed,) = stack.api("GET", "/api/conversations", token).json()["items"]
    assert listed["conversationId"] == listing[0]["conversationId"]
    history = stack.api("GET", f"/api/conversations/{listed['conversationId']}/messages?limit=100", token)
    rows = list(reversed(history.json()["items"]))
    assert [m["content"] for m in rows if m["role"] == "user" and m["content"] in burst] == typed
    asked = {m["messageId"]: m["content"] for m in rows if m["role"] == "user"}
    replies = sorted((m for m in rows if m["role"] == "assistant"), key=lambda m: m["messageId"])
    assert [asked[r["replyTo"]] for r in replies if asked[r["replyTo"]] in burst] == typed
