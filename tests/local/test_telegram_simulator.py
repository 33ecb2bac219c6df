"""The Telegram simulator answers the Bot API client as Telegram would, and delivers users' updates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.telegram import TelegramSimulator
from serverless_openclaw.telegram import TelegramClient, TelegramError, split_message
from tests.local.servers import LoopbackServer, serve

TOKEN = "4242:local-bot-token"


@pytest.fixture
def telegram() -> Iterator[tuple[TelegramSimulator, LoopbackServer]]:
    simulator = TelegramSimulator(TOKEN)
    with serve(simulator.app) as server:
        yield simulator, server


def bot(server: LoopbackServer, token: str = TOKEN) -> TelegramClient:
    return TelegramClient(token, api_base=server.url, sleep=lambda seconds: None, attempts=3)


def test_a_reply_streamed_by_edits_shows_the_final_text_in_one_message(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    simulator, server = telegram
    client = bot(server)
    # Given a "waking up" message, then typing, then edits as the answer streams
    message_id = client.send_message(77, "Waking up your agent…")
    client.send_chat_action(77)
    for text in ("The answer", "The answer is **42**", "The answer is **42**"):
        client.edit_formatted(77, message_id, text)
    # Then the chat shows one message with the final, formatted text; the unchanged edit did no harm
    assert simulator.chat(77) == ["The answer is 42"]
    assert simulator.messages[77][0].parse_mode == "HTML"
    assert simulator.actions == [(77, "typing")]


def test_markup_telegram_cannot_parse_falls_back_to_plain_text(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    simulator, server = telegram
    # Given text whose HTML rendering nests tags in a way Telegram refuses
    tricky = "**bold _and** italic_"
    bot(server).send_formatted(77, tricky)
    # Then the message arrived once, as the plain original
    assert simulator.chat(77) == [tricky]
    assert [method for method, _ in simulator.calls] == ["sendMessage", "sendMessage"]


def test_a_rate_limit_is_waited_out_and_the_message_arrives_once(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    simulator, server = telegram
    simulator.rate_limited_calls, simulator.retry_after = 2, 1
    waited: list[float] = []
    client = TelegramClient(TOKEN, api_base=server.url, sleep=waited.append)
    client.send_message(77, "hello")
    assert simulator.chat(77) == ["hello"] and waited == [1.0, 1.0]


def test_a_long_answer_split_for_telegram_arrives_in_order(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    simulator, server = telegram
    answer = "\n\n".join(f"Part {i}: " + "lorem ipsum " * 200 for i in range(5))
    with pytest.raises(TelegramError, match="too long"):
        bot(server).send_message(77, answer)
    for piece in split_message(answer):
        bot(server).send_formatted(77, piece)
    shown = simulator.chat(77)
    assert len(shown) > 1 and all(len(text) <= 4096 for text in shown)
    assert [text.split(":")[0] for text in shown] == sorted(text.split(":")[0] for text in shown)
    assert " ".join(" ".join(shown).split()) == " ".join(answer.split())


def test_the_bot_api_refuses_a_wrong_token_and_unknown_edits(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    _, server = telegram
    with pytest.raises(TelegramError) as wrong:
        bot(server, token="4242:stolen").send_message(77, "hi")
    assert wrong.value.status == 401
    with pytest.raises(TelegramError, match="message to edit not found"):
        bot(server).edit_message_text(77, 999, "nothing here")


def test_updates_reach_the_webhook_with_the_secret_header_and_can_be_redelivered(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    simulator, server = telegram
    received: list[tuple[str | None, dict[str, Any]]] = []

    async def webhook(request: Request) -> Response:
        received.append(
            (request.headers.get("x-telegram-bot-api-secret-token"), json.loads(await request.body()))
        )
        return Response(status_code=200)

    with serve(Starlette(routes=[Route("/telegram", webhook, methods=["POST"])])) as hook:
        # Given the webhook registered as the setup script does
        client = bot(server)
        client.call(
            "setWebhook", url=f"{hook.url}/telegram", secret_token="s3cret", allowed_updates=["message"]
        )
        assert client.call("getWebhookInfo")["url"] == f"{hook.url}/telegram"

        # When a user writes, and Telegram delivers the same update again
        update, status = server.run(simulator.deliver(1001, "/start"))
        again = server.run(simulator.redeliver(update))
        forged = server.run(simulator.redeliver(update, secret="guess"))

    # Then the webhook saw the update (same update_id each time) with the header Telegram sends
    assert (status, again, forged) == (200, 200, 200)
    assert [secret for secret, _ in received] == ["s3cret", "s3cret", "guess"]
    assert {body["update_id"] for _, body in received} == {update["update_id"]}
    message = received[0][1]["message"]
    assert (
        message["text"] == "/start" and message["from"]["id"] == 1001 and message["chat"]["type"] == "private"
    )


def test_a_webhook_must_be_set_before_users_can_write(
    telegram: tuple[TelegramSimulator, LoopbackServer],
) -> None:
    simulator, server = telegram
    with pytest.raises(RuntimeError, match="setWebhook"):
        server.run(simulator.deliver(1001, "hello"))


@pytest.mark.parametrize("connections", [1, 40])
def test_updates_go_out_over_at_most_max_connections_in_the_order_they_were_made(
    telegram: tuple[TelegramSimulator, LoopbackServer], connections: int
) -> None:
    simulator, server = telegram
    arrived: list[int] = []
    in_flight = [0, 0]  # now, most

    async def webhook(request: Request) -> Response:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        arrived.append(json.loads(await request.body())["message"]["message_id"])
        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        return Response(status_code=200)

    async def burst() -> list[int]:
        sent = await asyncio.gather(*(simulator.deliver(1001, f"m{i}") for i in range(5)))
        return [update["message"]["message_id"] for update, _ in sent]

    with serve(Starlette(routes=[Route("/telegram", webhook, methods=["POST"])])) as hook:
        # Given a webhook registered with max_connections
        bot(server).call("setWebhook", url=f"{hook.url}/telegram", max_connections=connections)
        assert bot(server).call("getWebhookInfo")["max_connections"] == connections

        # When a user writes five messages at once
        made = server.run(burst())

    # Then one connection delivers them one by one in the order made; Telegram's default, side by side
    assert sorted(arrived) == sorted(made)
    if connections == 1:
        assert in_flight[1] == 1 and arrived == made
    else:
        assert in_flight[1] > 1
