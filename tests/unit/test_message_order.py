"""The order in which queued messages are answered: per conversation, as sent; conversations independent."""

from __future__ import annotations

from typing import Any

from serverless_openclaw.message_order import answer_order, claimable
from serverless_openclaw.messages import InboxItem

NOW = 1_000.0


def web(message_id: str, conversation: str = "c1", **fields: Any) -> InboxItem:
    return InboxItem("u", message_id, f"text {message_id}", "web", conversation, NOW, **fields)


def telegram(
    message_id: str, sent: int, chat: int = 42, conversation: str = "c1", **fields: Any
) -> InboxItem:
    reply_to = {"chatId": chat, "messageId": sent}
    return InboxItem(
        "u", message_id, f"telegram {sent}", "telegram", conversation, NOW, reply_to=reply_to, **fields
    )


def ids(items: list[InboxItem]) -> list[str]:
    return [item.message_id for item in items]


def test_web_messages_go_by_id() -> None:
    # Given three messages of a conversation listed out of order
    items = [web("03"), web("01"), web("02")]

    # Then they are answered by id, and only the first may be claimed
    assert ids(answer_order(items)) == ["01", "02", "03"]
    assert ids(claimable(items, NOW)) == ["01"]


def test_a_telegram_chat_goes_by_its_message_id_even_when_delivered_out_of_order() -> None:
    # Given Telegram messages 11 and 12 that reached the webhook after 13, with a web message between
    items = [telegram("01", 13), web("02", conversation="c2"), telegram("03", 11), telegram("04", 12)]

    # Then the chat's messages are answered 11, 12, 13 in the chat's places; the web message keeps its own
    assert ids(answer_order(items)) == ["03", "02", "04", "01"]
    assert ids(claimable(items, NOW)) == ["03", "02"]


def test_two_telegram_chats_do_not_reorder_each_other() -> None:
    items = [telegram("01", 9, chat=1), telegram("02", 5, chat=2), telegram("03", 3, chat=1)]
    assert ids(answer_order(items)) == ["03", "02", "01"]


def test_a_conversation_being_answered_holds_back_its_next_message_but_not_other_conversations() -> None:
    # Given the first message of c1 leased to a bridge (its lease still running), and more queued
    items = [
        web("01", status="claimed", claimed_by="bridge-1", claim_expires_at=NOW + 60),
        web("02"),
        web("03", conversation="c2"),
    ]

    # Then c1's next message waits, and c2 goes on
    assert ids(claimable(items, NOW)) == ["03"]

    # And once the lease has run out, the first message is offered again before anything else of c1
    assert ids(claimable(items, NOW + 61)) == ["01", "03"]


def test_a_failed_message_holds_back_nothing() -> None:
    items = [web("01", status="failed"), web("02"), web("03")]
    assert ids(claimable(items, NOW)) == ["02"]


def test_an_empty_queue_offers_nothing() -> None:
    assert claimable([], NOW) == []
