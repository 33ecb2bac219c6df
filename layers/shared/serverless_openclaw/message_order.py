"""The order in which a user's queued messages are answered.

Within a conversation, messages are answered one at a time, in the order the person sent them: by
message id (a ULID that intake hands out in the order the person typed, see docs/architecture.md,
Lifecycle of a message), except that a Telegram chat's messages go by Telegram's own `message_id`,
because Telegram may deliver a chat's updates out of order. A conversation whose next message is being
answered (or waits for another attempt) holds back its later messages; other conversations go on.
"""

from __future__ import annotations

from collections.abc import Sequence

from serverless_openclaw.messages import InboxItem


def answer_order(items: Sequence[InboxItem]) -> list[InboxItem]:
    """Every item in the order it must be answered.

    By id, except that the items of each Telegram chat are put into `message_id` order in the places
    those items take, so that order between a chat and the rest of the queue is kept as it arrived.
    """
    ordered = sorted(items, key=lambda item: item.message_id)
    places: dict[int, list[int]] = {}
    for place, item in enumerate(ordered):
        sent = item.telegram_message()
        if sent is not None:
            places.setdefault(sent[0], []).append(place)
    for chat_places in places.values():
        in_chat = sorted((ordered[p] for p in chat_places), key=_telegram_message_id)
        for place, item in zip(chat_places, in_chat, strict=True):
            ordered[place] = item
    return ordered


def claimable(items: Sequence[InboxItem], now: float) -> list[InboxItem]:
    """The items a bridge may lease now, best first: at most one per conversation, its first unanswered.

    A conversation whose first unanswered item is leased (being answered) offers nothing: its next
    message waits until that one is answered, released or given up on. Failed items wait for nobody.
    """
    found: list[InboxItem] = []
    settled: set[str] = set()
    for item in answer_order(items):
        if item.status == "failed" or item.conversation_id in settled:
            continue
        settled.add(item.conversation_id)
        if item.available(now):
            found.append(item)
    return found


def _telegram_message_id(item: InboxItem) -> int:
    sent = item.telegram_message()
    return sent[1] if sent is not None else 0
