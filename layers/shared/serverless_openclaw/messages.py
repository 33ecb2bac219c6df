"""A user message on its way to the agent: as received from a channel, as stored, and as queued.

Every message is stored (Conversations) and queued (Inbox) before anything else happens to it; a bridge
then leases the queued item, answers it and deletes it (see docs/architecture.md, Lifecycle of a message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A validated user message from any channel."""

    user_id: str
    text: str
    channel: str
    conversation_id: str | None = None
    idempotency_key: str | None = None
    client_message_id: str | None = None
    reply_to: dict[str, Any] | None = None
    follows: str | None = None
    """The idempotency key of the message the sender sent just before this one and has no ack for yet:
    this one may only be stored after it (and so gets a later id)."""


class OutOfOrder(Exception):
    """The message this one follows is not stored yet: the sender sends it again once that one is acked."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """Where the message was stored; `duplicate` when it had been accepted before."""

    message_id: str
    conversation_id: str
    duplicate: bool = False


def reply_id(message_id: str) -> str:
    """The id of the assistant reply to a user message: one per message, whoever answers it.

    Derived, not drawn: a second answer to the same message (a stale bridge, a replacement) lands on the
    same history row, which a conditional write refuses. It sorts right after the message it answers.
    """
    return f"{message_id}-reply"


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One queued user message: `queued`, `claimed` (leased to one bridge) or `failed` (given up on)."""

    user_id: str
    message_id: str
    text: str
    channel: str
    conversation_id: str
    created_at: float
    client_message_id: str | None = None
    reply_to: Mapping[str, Any] = field(default_factory=dict)
    status: str = "queued"
    claimed_by: str | None = None
    claim_expires_at: float | None = None
    attempts: int = 0
    last_error: str | None = None

    def telegram_target(self) -> tuple[int, int | None] | None:
        """(chat id, "waking up" message id) of a Telegram message; None for the web or without a chat."""
        chat, waiting = self.reply_to.get("chatId"), self.reply_to.get("placeholderId")
        if self.channel != "telegram" or not _is_int(chat):
            return None
        return chat, waiting if _is_int(waiting) else None

    def telegram_message(self) -> tuple[int, int] | None:
        """(chat id, Telegram `message_id`) of a Telegram message; None for the web or when unknown."""
        chat, sent = self.reply_to.get("chatId"), self.reply_to.get("messageId")
        if self.channel != "telegram" or not _is_int(chat) or not _is_int(sent):
            return None
        return chat, sent

    def available(self, now: float) -> bool:
        """Queued, or claimed by a bridge whose lease has run out."""
        if self.status == "queued":
            return True
        return self.status == "claimed" and (self.claim_expires_at or 0) <= now


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
